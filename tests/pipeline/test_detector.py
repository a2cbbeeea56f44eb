"""Mechanism Y's runs against a real S3 server: same files as replay, whatever the batching."""

from __future__ import annotations

import pytest

from patternflow.engine.state import StateConflict
from patternflow.pipeline.detector import detect
from patternflow.pipeline.layout import chunk_key, end_of_stream_key
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.sources import source_opener
from patternflow.pipeline.status import expected_key, read_chunk_metrics, read_progress
from tests.helpers import file_rows, lively_config

CHUNK = 5_000


def settings_for(bucket, banksim, **extra) -> PipelineSettings:
    return PipelineSettings(
        bucket=bucket, transactions=str(banksim.transactions), importance=str(banksim.importance), chunk_size=CHUNK, **extra
    )


def s3_files(store: S3Store, settings: PipelineSettings) -> dict[str, list[list[str]]]:
    return {k.rsplit("/", 1)[1]: without_times(store.get(k).decode()) for k in store.list(settings.output_prefix)}


def without_times(text: str) -> list[list[str]]:
    return [row[2:] for row in file_rows(text)]


def run_until_finished(store, settings, runs: int = 50) -> list:
    reports = []
    for _ in range(runs):
        reports.append(detect(store, settings, lively_config(CHUNK)))
        if reports[-1].end_of_stream:
            return reports
    raise AssertionError("the stream did not finish")


@pytest.mark.parametrize("per_run", [1, 4, 20])
def test_the_detector_writes_what_replay_writes(small_banksim, s3_client, bucket, replayed, per_run):
    settings = settings_for(bucket, small_banksim, max_chunks_per_run=per_run)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    reports = run_until_finished(store, settings)
    assert s3_files(store, settings) == replayed
    assert [c for r in reports for c in r.chunks] == list(range(12))
    assert max(len(r.chunks) for r in reports) == min(per_run, 12)
    assert sum(sum(r.new_detections.values()) for r in reports) == sum(len(rows) for rows in replayed.values())


@pytest.mark.parametrize(("max_rows", "per_run"), [(CHUNK * 5 // 2, 2), (CHUNK // 3, 1), (CHUNK * 100, 12)])
def test_a_run_takes_every_waiting_chunk_up_to_its_bound_in_rows(small_banksim, s3_client, bucket, replayed, max_rows, per_run):
    """No bound by count: a run takes what is waiting, at most max_rows_per_run rows and never
    less than one chunk."""
    settings = settings_for(bucket, small_banksim, max_rows_per_run=max_rows)
    assert settings.max_chunks_per_run == 0
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    reports = run_until_finished(store, settings)
    assert s3_files(store, settings) == replayed
    assert [len(r.chunks) for r in reports if r.chunks] == [per_run] * (12 // per_run)
    assert all(r.rows <= max(max_rows, CHUNK) for r in reports)


def test_runs_follow_the_producer_and_wait_for_the_end_marker(small_banksim, s3_client, bucket, replayed):
    settings = settings_for(bucket, small_banksim)
    store = S3Store(s3_client, bucket)
    opener = source_opener(lambda: s3_client)
    assert detect(store, settings).chunks == []  # no stream yet
    assert expected_key(store, settings) == chunk_key(settings, 0)
    produce(store, settings, opener, 0.0, fast=False)
    produce(store, settings, opener, 2.0, fast=False)
    assert detect(store, settings, lively_config(CHUNK)).chunks == [0, 1, 2]
    assert expected_key(store, settings) == chunk_key(settings, 3)
    assert detect(store, settings, lively_config(CHUNK)).chunks == []  # chunk 3 is not there yet
    store.put(chunk_key(settings, 11), b"not yet")  # a later chunk does not jump the gap
    produce(store, settings, opener, 11.0, fast=False)
    store.delete([end_of_stream_key(settings)])  # as if the producer had not written it yet
    report = detect(store, settings, lively_config(CHUNK))
    assert report.chunks == list(range(3, 12)) and not report.end_of_stream
    assert expected_key(store, settings) == end_of_stream_key(settings)
    produce(store, settings, opener, 12.0, fast=False)
    final = detect(store, settings, lively_config(CHUNK))
    assert final.end_of_stream and final.chunks == []
    assert expected_key(store, settings) is None
    assert s3_files(store, settings) == replayed
    progress = read_progress(store, settings, count_uploads=True)
    assert (progress.finished, progress.chunks_folded, progress.chunks_uploaded, progress.end_of_stream_marker) == (True, 12, 12, True)
    assert detect(store, settings, lively_config(CHUNK)).chunks == []
    written = [name.rsplit("/", 1)[1] for record in read_chunk_metrics(store, settings) for name in record["files"]]
    assert written == sorted(replayed, key=lambda n: int(n[10:-4]))  # the last file, written by a later run, is the last chunk's


def test_every_chunk_gets_a_metrics_record(small_banksim, s3_client, bucket):
    settings = settings_for(bucket, small_banksim, max_chunks_per_run=5)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    run_until_finished(store, settings)
    metrics = read_chunk_metrics(store, settings)
    assert [m["index"] for m in metrics] == list(range(12))
    assert all(m["uploaded_at"] <= m["started_at"] <= m["finished_at"] <= m["committed_at"] for m in metrics)
    assert sum(m["rows"] for m in metrics) == 60_000


def test_a_run_that_dies_before_its_commit_is_redone_with_the_same_files(small_banksim, s3_client, bucket, replayed, monkeypatch):
    settings = settings_for(bucket, small_banksim, max_chunks_per_run=6)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    detect(store, settings, lively_config(CHUNK))

    def crash(*args, **kwargs):
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr("patternflow.pipeline.detector.commit", crash)
    with pytest.raises(RuntimeError):
        detect(store, settings, lively_config(CHUNK))
    monkeypatch.undo()
    assert read_progress(store, settings).chunks_folded == 6
    run_until_finished(store, settings)
    assert s3_files(store, settings) == replayed


class RacedStore:
    """An S3Store on which, just before a run makes its state current, another detection run
    (a task that outlived its scheduler, say) does a whole run of its own from the same state."""

    def __init__(self, inner: S3Store, settings: PipelineSettings) -> None:
        self.inner, self.settings, self.raced = inner, settings, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def replace(self, key, data, expected):
        if key.endswith("CURRENT") and not self.raced:
            self.raced.append(detect(self.inner, self.settings, lively_config(CHUNK)))
        return self.inner.replace(key, data, expected)


def test_two_detection_runs_racing_commit_once_and_the_files_stay_right(small_banksim, s3_client, bucket, replayed):
    settings = settings_for(bucket, small_banksim, max_chunks_per_run=3)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    detect(store, settings, lively_config(CHUNK))  # chunks 0-2
    raced = RacedStore(store, settings)
    with pytest.raises(StateConflict, match="another detection run committed meanwhile"):
        detect(raced, settings, lively_config(CHUNK))
    assert raced.raced[0].chunks == [3, 4, 5]  # the run that won; the loser's chunks 3-5 are not folded twice
    assert read_progress(store, settings).chunks_folded == 6
    run_until_finished(store, settings)
    assert s3_files(store, settings) == replayed
