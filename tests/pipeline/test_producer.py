"""Mechanism X against a real S3 server: pacing, catch-up, idempotent re-runs, end of stream, reset."""

from __future__ import annotations

import json

import pytest

from patternflow.errors import InputError
from patternflow.ingest.chunking import ChunkedFile
from patternflow.pipeline.layout import chunk_key, end_of_stream_key, importance_key
from patternflow.pipeline.producer import StreamError, load_manifest, produce, reset_stream
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.sources import source_opener
from tests.conftest import HEADER, IMPORTANCE_HEADER, write

T0 = 1_800_000_000.0


@pytest.fixture
def stream(small_banksim, s3_client, bucket):
    settings = PipelineSettings(
        bucket=bucket, transactions=str(small_banksim.transactions), importance=str(small_banksim.importance), chunk_size=5_000
    )
    return S3Store(s3_client, bucket), settings, source_opener(lambda: s3_client)


def chunks_on(store: S3Store, settings: PipelineSettings) -> list[str]:
    return [k for k in store.list(settings.chunks_prefix) if k.rsplit("/", 1)[1].startswith("chunk_")]


def test_the_first_run_starts_the_stream_and_uploads_chunk_zero(stream, small_banksim):
    store, settings, opener = stream
    report = produce(store, settings, opener, T0, fast=False)
    assert report.stream_started and report.uploaded == [0] and report.chunks == 12
    assert store.get(importance_key(settings)) == small_banksim.importance.read_bytes()
    manifest = load_manifest(store, settings)
    assert (manifest.rows, manifest.chunks, manifest.chunk_size, manifest.tick_seconds) == (60_000, 12, 5_000, 1.0)
    assert chunks_on(store, settings) == [chunk_key(settings, 0)]


def test_chunks_are_the_files_rows_in_order_with_the_header(stream, small_banksim):
    store, settings, opener = stream
    produce(store, settings, opener, T0, fast=True)
    source = ChunkedFile(small_banksim.transactions.read_bytes(), 5_000)
    for i in range(12):
        assert store.get(chunk_key(settings, i)) == source.chunk(i).data
    assert store.get(chunk_key(settings, 11)).decode().startswith(HEADER)


def test_a_stream_ticks_from_when_its_start_is_done_not_from_when_the_task_began(stream, small_banksim):
    """A clock read when needed: a start that takes 5 ticks (a large CustomerImportance) is not
    followed by a burst of the 5 chunks that fell due meanwhile."""
    store, settings, opener = stream
    now = [T0]

    def slow_opener(location: str):
        if location == settings.importance:
            now[0] += 5.0  # reading and summing the reference data takes 5 s
        return opener(location)

    report = produce(store, settings, slow_opener, lambda: now[0], fast=False)
    assert report.stream_started and report.uploaded == [0]
    manifest = load_manifest(store, settings)
    assert manifest.started_epoch == T0 + 5.0
    now[0] += 1.0
    assert produce(store, settings, opener, lambda: now[0], fast=False).uploaded == [1]


def test_each_tick_uploads_what_is_due_and_missed_ticks_are_caught_up(stream):
    store, settings, opener = stream
    produce(store, settings, opener, T0, fast=False)
    assert produce(store, settings, opener, T0 + 0.9, fast=False).uploaded == []
    assert produce(store, settings, opener, T0 + 1.0, fast=False).uploaded == [1]
    assert produce(store, settings, opener, T0 + 4.2, fast=False).uploaded == [2, 3, 4]  # two ticks were missed
    assert len(chunks_on(store, settings)) == 5


def test_a_rerun_tick_writes_the_same_bytes_to_the_same_keys(stream):
    store, settings, opener = stream
    produce(store, settings, opener, T0, fast=False)
    produce(store, settings, opener, T0 + 2, fast=False)
    first = {k: store.get(k) for k in chunks_on(store, settings)}
    store.delete([chunk_key(settings, 2)])  # as if the tick died after chunk 1
    assert produce(store, settings, opener, T0 + 2, fast=False).uploaded == [2]
    assert {k: store.get(k) for k in chunks_on(store, settings)} == first


def test_nothing_runs_past_the_end_and_the_end_is_marked(stream):
    store, settings, opener = stream
    report = produce(store, settings, opener, T0, fast=True)
    assert report.uploaded == list(range(12)) and report.end_of_stream
    assert json.loads(store.get(end_of_stream_key(settings))) | {"finished_at": None} == {"chunks": 12, "rows": 60_000, "finished_at": None}
    later = produce(store, settings, opener, T0 + 1_000, fast=False)
    assert later.uploaded == [] and later.end_of_stream
    assert len(chunks_on(store, settings)) == 12


def test_an_empty_source_is_a_stream_of_no_chunks(stream, tmp_path):
    store, settings, opener = stream
    empty = write(tmp_path / "transactions.csv", HEADER + "\n")
    settings = PipelineSettings(bucket=settings.bucket, transactions=str(empty), importance=settings.importance)
    report = produce(store, settings, opener, T0, fast=False)
    assert report.chunks == 0 and report.uploaded == [] and report.end_of_stream


@pytest.mark.parametrize(("text", "expected"), [("", "line 1: the file is empty"), ("step;amount\n", "line 1, field 'step'")])
def test_an_empty_source_or_a_wrong_header_stops_the_stream_before_any_chunk(stream, tmp_path, text, expected):
    store, settings, opener = stream
    bad = write(tmp_path / "transactions.csv", text)
    settings = PipelineSettings(bucket=settings.bucket, transactions=str(bad), importance=settings.importance)
    with pytest.raises(InputError, match=expected):
        produce(store, settings, opener, T0, fast=True)
    assert load_manifest(store, settings) is None and chunks_on(store, settings) == []


def test_sources_can_be_on_s3(stream, small_banksim, s3_client):
    store, settings, opener = stream
    store.put("raw/transactions.csv", small_banksim.transactions.read_bytes())
    store.put("raw/importance.csv", small_banksim.importance.read_bytes())
    on_s3 = PipelineSettings(
        bucket=settings.bucket,
        transactions=f"s3://{settings.bucket}/raw/transactions.csv",
        importance=f"s3://{settings.bucket}/raw/importance.csv",
        chunk_size=5_000,
    )
    produce(store, on_s3, opener, T0, fast=True)
    source = ChunkedFile(small_banksim.transactions.read_bytes(), 5_000)
    assert [store.get(chunk_key(on_s3, i)) for i in range(12)] == [c.data for c in source]


def test_a_changed_source_or_chunk_size_stops_the_stream(stream, small_banksim, tmp_path):
    store, settings, opener = stream
    copy = write(tmp_path / "transactions.csv", small_banksim.transactions.read_bytes())
    settings = PipelineSettings(bucket=settings.bucket, transactions=str(copy), importance=settings.importance, chunk_size=5_000)
    produce(store, settings, opener, T0, fast=False)
    write(copy, copy.read_bytes() + b"1,'C1','2','F','28007','M1','28007','es_food',1.00,0\n")
    with pytest.raises(StreamError, match="changed since the stream started"):
        produce(store, settings, opener, T0 + 5, fast=False)
    other = PipelineSettings(bucket=settings.bucket, transactions=str(copy), importance=settings.importance, chunk_size=1_000)
    with pytest.raises(StreamError, match="reset the stream"):
        produce(store, other, opener, T0 + 5, fast=False)


def test_bad_reference_data_stops_the_stream_before_any_chunk(stream, tmp_path):
    store, settings, opener = stream
    bad = write(tmp_path / "CustomerImportance.csv", IMPORTANCE_HEADER + "\n'C1','M1',heavy,'es_food',0\n")
    settings = PipelineSettings(bucket=settings.bucket, transactions=settings.transactions, importance=str(bad))
    with pytest.raises(InputError, match=r"line 2.*Weight"):
        produce(store, settings, opener, T0, fast=True)
    assert store.list("") == []


def test_reset_removes_one_streams_objects_and_nothing_else(stream):
    store, settings, opener = stream
    produce(store, settings, opener, T0, fast=True)
    store.put(settings.state_prefix + "CURRENT", b"{}")
    store.put(settings.output_prefix + "detection_0.csv", b"x")
    store.put("keep/me.csv", b"mine")
    store.put("transaction_chunks_archive/old.csv", b"old")
    store.put(settings.quarantine_prefix + "chunk_3.json", b"{}")
    removed = reset_stream(store, settings)
    assert removed == {"transaction_chunks/": 14, "reference/": 2, "state/": 1, "output_detections/": 1, "quarantine/": 1}
    assert store.list("") == ["keep/me.csv", "transaction_chunks_archive/old.csv"]


def test_the_stream_start_keeps_customer_importances_weight_ranks_for_the_detector(stream):
    """The producer sums CustomerImportance into its weight ranks while it checks it; the
    detector's first run starts from them and never reads the file (here: removed first)."""
    from patternflow.engine.detection_engine import WeightRanks, initial_state
    from patternflow.engine.parquet import parquet_table
    from patternflow.ingest.parsing import read_importance
    from patternflow.pipeline.detector import detect
    from patternflow.pipeline.layout import importance_key, weight_ranks_key

    store, settings, opener = stream
    produce(store, settings, opener, T0, fast=True)
    ranks = WeightRanks(parquet_table(store.get(weight_ranks_key(settings))))
    whole = initial_state(read_importance(settings.importance))
    from_ranks = initial_state(ranks)
    assert from_ranks.pairs.equals(whole.pairs) and from_ranks.customers.equals(whole.customers)
    store.delete([importance_key(settings)])
    assert detect(store, settings).chunks  # started from the ranks alone
