"""A state object damaged on S3: detected by the manifest's checksums, the newest intact version
is used instead, the event is logged, and the stream still ends with replay's files."""

from __future__ import annotations

import logging

import pytest

from patternflow.pipeline.detector import detect
from patternflow.pipeline.partitioned import detect_partition, write_detection_files
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.sources import source_opener
from patternflow.pipeline.status import read_chunk_metrics, read_progress
from tests.helpers import lively_config
from tests.reliability.conftest import CHUNK, s3_files, stream_settings

pytestmark = pytest.mark.slow


def truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def flip_a_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


DAMAGE = {
    # what is damaged: (keys, how, the chunk the next run starts from, what the log must say)
    "pairs.parquet truncated": (["state/versions/0000000002/pairs.parquet"], truncate, 4, "version 2 is damaged"),
    "pending.parquet, one byte flipped": (["state/versions/0000000002/pending.parquet"], flip_a_byte, 4, "checksum mismatch"),
    "CURRENT truncated": (["state/CURRENT"], truncate, 8, "state/CURRENT is damaged"),
    "CURRENT and pairs.parquet": (["state/CURRENT", "state/versions/0000000002/pairs.parquet"], truncate, 4, "recovered from version 1"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_state_object_falls_back_to_the_last_intact_version(damage, small_banksim, s3_client, bucket, replayed, caplog):
    keys, how, resume_from, logged = DAMAGE[damage]
    settings = stream_settings(bucket, small_banksim, max_chunks_per_run=4)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    detect(store, settings, lively_config(CHUNK))  # version 1: chunks 0..3
    detect(store, settings, lively_config(CHUNK))  # version 2: chunks 4..7
    for key in keys:
        store.put(key, how(store.get(key)))

    with caplog.at_level(logging.ERROR, logger="patternflow.engine.state"):
        report = detect(store, settings, lively_config(CHUNK))
    assert report.chunks[0] == resume_from
    assert logged in caplog.text

    while not report.end_of_stream:
        report = detect(store, settings, lively_config(CHUNK))
    assert s3_files(store, settings) == replayed


PARTITIONED_DAMAGE = {
    # what is damaged after two DAG runs of 2 partitions (4 chunks a run, 8 merged): (keys, the chunks the next merge merges)
    "the stream's last version": (["state/versions/0000000002/pending.parquet"], range(4, 12)),
    "the stream's CURRENT and last version": (["state/CURRENT", "state/versions/0000000002/pending.parquet"], range(4, 12)),
    "a partition's last version": (["state/partitions/1/versions/0000000002/pairs.parquet"], range(0)),
    "the stream's and a partition's": (
        ["state/versions/0000000002/pending.parquet", "state/partitions/0/versions/0000000002/pairs.parquet"],
        range(4, 8),
    ),
}


@pytest.mark.parametrize("damage", list(PARTITIONED_DAMAGE))
def test_merchant_partitions_fall_back_past_merged_chunks_and_still_give_replays_files(
    damage, small_banksim, s3_client, bucket, replayed, caplog
):
    """The stream's state falling back to a version before chunks it already merged must find
    those chunks' staged detections again; a partition falling back refolds its chunks."""
    keys, merged = PARTITIONED_DAMAGE[damage]
    settings = stream_settings(bucket, small_banksim, max_chunks_per_run=4, partitions=2)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)

    def dag_run():
        for partition in range(settings.partitions):
            detect_partition(store, settings, partition, lively_config(CHUNK))
        return write_detection_files(store, settings, lively_config(CHUNK))

    dag_run()  # stream version 1: chunks 0..3 merged
    dag_run()  # stream version 2: chunks 4..7 merged
    for key in keys:
        store.put(key, flip_a_byte(store.get(key)))

    with caplog.at_level(logging.ERROR, logger="patternflow.engine.state"):
        report = dag_run()
    assert "damaged" in caplog.text
    assert report.chunks == list(merged)
    for _ in range(10):
        if report.end_of_stream:
            break
        report = dag_run()
    assert report.end_of_stream
    assert s3_files(store, settings) == replayed
    assert [m["index"] for m in read_chunk_metrics(store, settings)] == list(range(read_progress(store, settings).chunks_total))
