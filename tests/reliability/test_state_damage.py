"""A state object damaged on S3: detected by the manifest's checksums, the newest intact version
is used instead, the event is logged, and the stream still ends with replay's files."""

from __future__ import annotations

import logging

import pytest

from patternflow.pipeline.detector import detect
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.sources import source_opener
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
