"""Reference data through the stores by byte range and in pieces, never whole: the producer's
stream start and the detector's first run read their inputs in windows and batches."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import pytest

from patternflow.engine.store import LocalStore, range_reader
from patternflow.errors import InputError
from patternflow.ingest import chunking, parsing
from patternflow.pipeline import sources
from patternflow.pipeline.detector import detect
from patternflow.pipeline.layout import importance_key, weight_ranks_key
from patternflow.pipeline.producer import load_manifest, produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.sources import LocalSource, source_opener
from tests.conftest import IMPORTANCE_HEADER, write
from tests.helpers import lively_config

MIB = 1 << 20
WINDOW = 4_096


def pieces_of(data: bytes, size: int):
    return (data[i : i + size] for i in range(0, len(data), size))


def failing_after(data: bytes, size: int):
    yield from pieces_of(data, size)
    raise RuntimeError("the source went away")


@pytest.mark.parametrize("size", [0, 1, 3 * MIB, 11 * MIB + 17])
def test_s3_put_stream_writes_the_pieces_as_one_object(s3_client, bucket, size):
    """One PUT up to a part, a multipart upload of 5 MiB parts beyond (S3's smallest)."""
    store = S3Store(s3_client, bucket, part_bytes=5 * MIB)
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    store.put_stream("reference/big.csv", pieces_of(data, MIB))
    assert store.get("reference/big.csv") == data
    assert store.size("reference/big.csv") == size
    if size:
        assert store.read_range("reference/big.csv", size // 2, size + 5) == data[size // 2 :]


def test_an_s3_put_stream_that_fails_leaves_no_object_and_no_parts(s3_client, bucket):
    store = S3Store(s3_client, bucket, part_bytes=5 * MIB)
    with pytest.raises(RuntimeError, match="went away"):
        store.put_stream("reference/big.csv", failing_after(b"y" * 12 * MIB, MIB))
    assert not store.exists("reference/big.csv")
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")


class RefusingAborts:
    """An S3 client on which aborting a multipart upload fails (a policy without the right, say)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def abort_multipart_upload(self, **kwargs):
        raise PermissionError("AccessDenied: s3:AbortMultipartUpload")


def test_a_failed_put_stream_raises_its_own_error_when_the_abort_fails_too(s3_client, bucket, caplog):
    store = S3Store(RefusingAborts(s3_client), bucket, part_bytes=5 * MIB)
    with pytest.raises(RuntimeError, match="went away"):
        store.put_stream("reference/big.csv", failing_after(b"y" * 12 * MIB, MIB))
    assert not store.exists("reference/big.csv")
    assert "aborting the failed multipart upload" in caplog.text and "AccessDenied" in caplog.text
    for upload in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3_client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def test_local_store_reads_ranges_and_writes_pieces(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_stream("a/b.csv", [b"012", b"", b"3456789"])
    assert (store.size("a/b.csv"), store.read_range("a/b.csv", 2, 5), store.read_range("a/b.csv", 8, 50)) == (10, b"234", b"89")
    assert range_reader(store, "a/b.csv")(0, 3) == b"012"
    with pytest.raises(RuntimeError):
        store.put_stream("a/b.csv", failing_after(b"new bytes", 2))
    assert store.get("a/b.csv") == b"0123456789"
    assert store.list("") == ["a/b.csv"]
    for read in (lambda: store.size("nothing"), lambda: store.read_range("nothing", 0, 1)):
        with pytest.raises(KeyError):
            read()


class Recording(LocalSource):
    """A local source that records the byte ranges read from it."""

    reads: ClassVar[list[tuple[str, int]]] = []

    def read_range(self, start: int, end: int) -> bytes:
        Recording.reads.append((self.location, end - start))
        return super().read_range(start, end)


def test_the_stream_start_reads_its_sources_only_in_windows_and_batches(small_banksim, tmp_path, monkeypatch):
    settings = PipelineSettings(
        bucket="local", transactions=str(small_banksim.transactions), importance=str(small_banksim.importance), chunk_size=5_000
    )
    produce(LocalStore(tmp_path / "default"), settings, source_opener(lambda: None), 0.0, fast=False)
    monkeypatch.setattr(chunking, "_SCAN_WINDOW_BYTES", WINDOW)
    monkeypatch.setattr(parsing, "IMPORTANCE_BATCH_BYTES", WINDOW)
    monkeypatch.setattr(sources, "PIECE_BYTES", WINDOW)
    Recording.reads = []
    store = LocalStore(tmp_path / "windows")
    report = produce(store, settings, Recording, 0.0, fast=False)
    assert report.stream_started
    assert store.get(importance_key(settings)) == small_banksim.importance.read_bytes()
    expected = load_manifest(LocalStore(tmp_path / "default"), settings)
    assert replace(load_manifest(store, settings), started_at=expected.started_at) == expected
    start_reads = Recording.reads[:-1]  # the last read is chunk 0's byte range
    assert len(start_reads) > 1_000 and max(n for _, n in start_reads) <= WINDOW


def test_a_bad_importance_line_in_a_later_batch_stops_the_stream_with_its_line(small_banksim, tmp_path, monkeypatch):
    rows = [f"'C{i}','M{i % 7}','1.{i % 100:02d}','es_food','0'" for i in range(3_000)]
    rows[2_500] = "'C1','M1','1.00','es_food'"
    bad = write(tmp_path / "CustomerImportance.csv", "\n".join([IMPORTANCE_HEADER, *rows]) + "\n")
    settings = PipelineSettings(bucket="local", transactions=str(small_banksim.transactions), importance=str(bad), chunk_size=5_000)
    monkeypatch.setattr(parsing, "IMPORTANCE_BATCH_BYTES", WINDOW)
    store = LocalStore(tmp_path / "store")
    with pytest.raises(InputError, match=r"line 2502, field 'fraud': 4 fields, expected 5"):
        produce(store, settings, source_opener(lambda: None), 0.0, fast=False)
    assert store.list("") == []


class NoWholeReference(LocalStore):
    """A store whose reference data may only be read by range, and records the largest read."""

    largest = 0

    def get(self, key: str) -> bytes:
        assert not key.endswith("CustomerImportance.csv"), "the reference data was read whole"
        return super().get(key)

    def read_range(self, key: str, start: int, end: int) -> bytes:
        if key.endswith("CustomerImportance.csv"):
            NoWholeReference.largest = max(NoWholeReference.largest, end - start)
        return super().read_range(key, start, end)


def test_without_weight_ranks_the_detector_reads_the_reference_data_by_range_in_batches(small_banksim, tmp_path, monkeypatch):
    settings = PipelineSettings(
        bucket="local", transactions=str(small_banksim.transactions), importance=str(small_banksim.importance), chunk_size=5_000
    )
    config = lively_config(5_000)
    default = LocalStore(tmp_path / "default")
    produce(default, settings, source_opener(lambda: None), 0.0, fast=True)
    detect(default, settings, config)
    monkeypatch.setattr(parsing, "IMPORTANCE_BATCH_BYTES", WINDOW)
    store = NoWholeReference(tmp_path / "batches")
    produce(store, settings, source_opener(lambda: None), 0.0, fast=True)
    store.delete([weight_ranks_key(settings)])  # a stream started without its weight ranks: the detector reads the file
    detect(store, settings, config)
    assert 0 < NoWholeReference.largest <= WINDOW
    outputs = [sorted(s.list(settings.output_prefix)) for s in (default, store)]
    assert outputs[0] == outputs[1] and outputs[0]
