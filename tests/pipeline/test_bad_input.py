"""Malformed chunks under each bad-chunk policy, and chunks that arrive out of order."""

from __future__ import annotations

import hashlib
import json

import pytest

from patternflow.errors import InputError
from patternflow.pipeline.detector import detect
from patternflow.pipeline.layout import chunk_key, quarantine_report_key, quarantined_chunk_key
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.sources import source_opener
from patternflow.pipeline.status import open_gap, read_chunk_metrics, read_progress
from tests.helpers import file_rows, lively_config

CHUNK = 5_000


def stream(s3_client, bucket, banksim, **extra) -> tuple[S3Store, PipelineSettings]:
    settings = PipelineSettings(
        bucket=bucket, transactions=str(banksim.transactions), importance=str(banksim.importance), chunk_size=CHUNK, **extra
    )
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    return store, settings


def finish(store: S3Store, settings: PipelineSettings) -> dict[str, list[list[str]]]:
    for _ in range(20):
        if detect(store, settings, lively_config(CHUNK)).end_of_stream:
            break
    return {k.rsplit("/", 1)[1]: [r[2:] for r in file_rows(store.get(k).decode())] for k in store.list(settings.output_prefix)}


def edit_chunk(store: S3Store, settings: PipelineSettings, index: int, edit) -> None:
    lines = store.get(chunk_key(settings, index)).decode().splitlines()
    store.put(chunk_key(settings, index), ("\n".join(edit(lines)) + "\n").encode())


def bad_amount(lines: list[str]) -> list[str]:
    fields = lines[3].split(",")
    fields[8] = "12.x4"
    return [*lines[:3], ",".join(fields), *lines[4:]]


def test_a_malformed_chunk_is_quarantined_with_a_report_and_the_stream_goes_on(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim)
    original = store.get(chunk_key(settings, 1))
    edit_chunk(store, settings, 1, bad_amount)
    bad = store.get(chunk_key(settings, 1))
    files = finish(store, settings)

    assert not store.exists(chunk_key(settings, 1))
    assert store.get(quarantined_chunk_key(settings, 1)) == bad
    report = json.loads(store.get(quarantine_report_key(settings, 1)))
    assert report["policy"] == "quarantine" and report["rows_folded"] == 0 and report["rows_read"] == CHUNK
    assert report["problems"] == [{"line": 4, "field": "amount", "message": "not a decimal number: '12.x4'"}]
    progress = read_progress(store, settings, count_uploads=True)
    assert (progress.finished, progress.chunks_folded, progress.rows_folded, progress.chunks_uploaded) == (True, 12, 55_000, 12)
    assert produce(store, settings, source_opener(lambda: s3_client), 99.0, fast=True).uploaded == []  # not uploaded again
    assert original != bad and files


def test_quarantine_gives_the_files_of_a_stream_without_that_chunks_rows(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim)
    edit_chunk(store, settings, 1, bad_amount)
    quarantined = finish(store, settings)

    s3_client.create_bucket(Bucket=bucket + "-ref")
    reference, ref_settings = stream(s3_client, bucket + "-ref", small_banksim)
    edit_chunk(reference, ref_settings, 1, lambda lines: lines[:1])  # header only: no rows
    assert quarantined == finish(reference, ref_settings)


def test_skip_rows_folds_the_good_rows_and_reports_the_bad(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, bad_chunk_policy="skip_rows")
    edit_chunk(store, settings, 1, bad_amount)
    skipped = finish(store, settings)
    report = json.loads(store.get(quarantine_report_key(settings, 1)))
    assert (report["rows_read"], report["rows_folded"], report["problems"][0]["line"]) == (CHUNK, CHUNK - 1, 4)
    assert store.exists(chunk_key(settings, 1)) and not store.exists(quarantined_chunk_key(settings, 1))
    assert read_progress(store, settings).rows_folded == 60_000 - 1

    s3_client.create_bucket(Bucket=bucket + "-ref")
    reference, ref_settings = stream(s3_client, bucket + "-ref", small_banksim)
    edit_chunk(reference, ref_settings, 1, lambda lines: [*lines[:3], *lines[4:]])  # without the bad row
    assert skipped == finish(reference, ref_settings)


def test_skip_rows_quarantines_a_chunk_with_no_usable_row(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, bad_chunk_policy="skip_rows")
    edit_chunk(store, settings, 2, lambda lines: ["step;customer;amount", *lines[1:]])
    finish(store, settings)
    assert store.exists(quarantined_chunk_key(settings, 2))
    assert json.loads(store.get(quarantine_report_key(settings, 2)))["problems"][0]["line"] == 1


@pytest.mark.parametrize("damage", [lambda lines: [], lambda lines: [*lines[:-1], lines[-1][:20]]], ids=["empty", "truncated"])
def test_halt_fails_the_run_naming_the_object_line_and_field(small_banksim, s3_client, bucket, damage):
    store, settings = stream(s3_client, bucket, small_banksim, bad_chunk_policy="halt")
    edit_chunk(store, settings, 1, damage)
    with pytest.raises(InputError, match=rf"s3://{bucket}/transaction_chunks/chunk_1.csv, line \d+"):
        detect(store, settings, lively_config(CHUNK))
    assert read_progress(store, settings).chunks_folded == 0
    assert store.list(settings.quarantine_prefix) == []


def test_a_gap_is_seen_and_names_the_missing_chunk(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim)
    detect(store, PipelineSettings(**{**settings.to_json(), "max_chunks_per_run": 3}), lively_config(CHUNK))
    assert open_gap(store, settings) is None
    store.delete([chunk_key(settings, 3), chunk_key(settings, 4)])
    gap = open_gap(store, settings)
    assert (gap.missing, gap.later) == (3, 5)
    assert gap.describe(gap.since + 42).startswith("chunk 3 is missing: chunk 5 arrived 42 s ago")
    assert detect(store, settings, lively_config(CHUNK)).chunks == []  # later chunks wait for the gap


def test_a_chunk_uploaded_again_is_ignored_if_identical_and_kept_aside_if_not(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim)
    files = finish(store, settings)
    same = store.get(chunk_key(settings, 2))
    store.put(chunk_key(settings, 2), same)  # a re-run producer tick
    assert detect(store, settings, lively_config(CHUNK)).conflicts == []

    edit_chunk(store, settings, 3, lambda lines: [*lines[:5], *lines[6:]])  # other bytes under a folded chunk's key
    report = detect(store, settings, lively_config(CHUNK))
    assert report.conflicts == [3] and report.chunks == []
    kept = [k for k in store.list(settings.quarantine_prefix + "conflicts/")]
    assert len(kept) == 2 and kept[0].endswith(".csv") and kept[1].endswith(".json")
    assert store.get(kept[0]) == store.get(chunk_key(settings, 3))
    assert json.loads(store.get(kept[1]))["action"] == "kept aside, not folded"
    assert detect(store, settings, lively_config(CHUNK)).conflicts == [3]  # still reported, kept aside once
    assert len(store.list(settings.quarantine_prefix + "conflicts/")) == 2
    assert finish(store, settings) == files
    assert read_progress(store, settings).rows_folded == 60_000


class Crash(Exception):
    pass


def detect_dying_at(target: str, store: S3Store, settings: PipelineSettings, monkeypatch) -> None:
    """A detection run that dies when it calls ``target`` (a dotted name)."""

    def dies(*args, **kwargs):
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(target, dies)
        with pytest.raises(Crash):
            detect(store, settings, lively_config(CHUNK))


def test_a_run_that_dies_after_quarantining_a_chunk_but_before_its_commit_finds_the_chunk_again(
    small_banksim, s3_client, bucket, monkeypatch
):
    store, settings = stream(s3_client, bucket, small_banksim)
    edit_chunk(store, settings, 1, bad_amount)
    bad = store.get(chunk_key(settings, 1))
    detect_dying_at("patternflow.pipeline.detector.commit", store, settings, monkeypatch)
    assert store.get(chunk_key(settings, 1)) == bad  # still where the next run expects it
    crashed = finish(store, settings)
    assert not store.exists(chunk_key(settings, 1)) and store.get(quarantined_chunk_key(settings, 1)) == bad

    s3_client.create_bucket(Bucket=bucket + "-ref")
    reference, ref_settings = stream(s3_client, bucket + "-ref", small_banksim)
    edit_chunk(reference, ref_settings, 1, bad_amount)
    assert crashed == finish(reference, ref_settings)
    assert read_progress(store, settings).rows_folded == 55_000


def test_a_run_that_dies_between_its_commit_and_the_removal_leaves_the_removal_to_the_next_run(
    small_banksim, s3_client, bucket, monkeypatch
):
    store, settings = stream(s3_client, bucket, small_banksim)
    edit_chunk(store, settings, 1, bad_amount)
    detect_dying_at("patternflow.pipeline.detector._remove_originals", store, settings, monkeypatch)
    assert store.exists(chunk_key(settings, 1)) and store.exists(quarantined_chunk_key(settings, 1))
    committed = read_progress(store, settings).chunks_folded
    assert [m["index"] for m in read_chunk_metrics(store, settings)] == list(range(committed))  # written right after the commit
    report = detect(store, settings, lively_config(CHUNK))
    assert report.conflicts == [] and not store.exists(chunk_key(settings, 1))
    assert store.exists(chunk_key(settings, 0))  # good chunks stay


def test_a_store_that_refuses_the_removal_keeps_the_stream_going(small_banksim, s3_client, bucket, monkeypatch, caplog):
    store, settings = stream(s3_client, bucket, small_banksim)
    edit_chunk(store, settings, 1, bad_amount)

    def refused(keys):
        raise PermissionError("AccessDenied")

    monkeypatch.setattr(store, "delete", refused)
    files = finish(store, settings)
    assert files and read_progress(store, settings).finished
    assert "not removed from the chunks prefix" in caplog.text and store.exists(chunk_key(settings, 1))


def test_blank_lines_a_chunk_ends_with_were_between_rows_of_the_source(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim)
    edit_chunk(store, settings, 1, lambda lines: [*lines[:-2], "", ""])  # its last two rows blank, as cut from the source
    finish(store, settings)
    report = json.loads(store.get(quarantine_report_key(settings, 1)))
    assert report["rows_read"] == CHUNK
    assert report["problems"] == [
        {"line": CHUNK, "field": None, "message": "blank line between rows"},
        {"line": CHUNK + 1, "field": None, "message": "blank line between rows"},
    ]


class EtagsThatAreNotMd5s(S3Store):
    """As S3 answers for objects under SSE-KMS encryption: ETags that are not the MD5 of the bytes
    (here, a fresh one at every upload, as there)."""

    def __init__(self, client, bucket):
        super().__init__(client, bucket)
        self.etags: dict[str, str] = {}

    def put(self, key: str, data: bytes) -> None:
        super().put(key, data)
        self.etags[key] = f"kms{len(self.etags)}"

    def fetch(self, key: str):
        stored = super().fetch(key)
        return type(stored)(stored.data, stored.written_at, self.etags.get(key, stored.tag))

    def digests(self, prefix: str) -> dict[str, str]:
        return {key: self.etags.get(key, etag) for key, etag in super().digests(prefix).items()}


def test_etags_that_are_not_md5s_raise_no_false_conflict(small_banksim, s3_client, bucket):
    settings = PipelineSettings(
        bucket=bucket, transactions=str(small_banksim.transactions), importance=str(small_banksim.importance), chunk_size=CHUNK
    )
    store = EtagsThatAreNotMd5s(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    files = finish(store, settings)
    assert detect(store, settings, lively_config(CHUNK)).conflicts == []
    store.put(chunk_key(settings, 2), store.get(chunk_key(settings, 2)))  # the same bytes: another ETag
    assert detect(store, settings, lively_config(CHUNK)).conflicts == []
    edit_chunk(store, settings, 3, lambda lines: [*lines[:5], *lines[6:]])
    assert detect(store, settings, lively_config(CHUNK)).conflicts == [3]
    report_key = next(k for k in store.list(settings.quarantine_prefix + "conflicts/") if k.endswith(".json"))
    assert json.loads(store.get(report_key))["uploaded_md5"] == hashlib.md5(store.get(chunk_key(settings, 3))).hexdigest()
    assert finish(store, settings) == files
