"""Streams for the dashboard tests: the small generated stream produced and detected in-process
against the S3 server on 127.0.0.1 (the real producer, detector and S3 client)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from patternflow.pipeline.detector import detect
from patternflow.pipeline.partitioned import PartitionReport, detect_partition, write_detection_files
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store, endpoint_client
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.sources import source_opener
from tests.helpers import lively_config

CHUNK = 5_000
"""12 chunks of the 60,000-row stream; 124 detections in files of 50, 50 and 24 rows."""


@dataclass(frozen=True)
class Stream:
    store: S3Store
    settings: PipelineSettings
    endpoint: str


def uploaded(endpoint: str, banksim, per_run: int, partitions: int = 1) -> Stream:
    """The whole stream uploaded to a new bucket, nothing detected yet."""
    client = endpoint_client(endpoint, access_key="test", secret_key="test")
    bucket = f"pf-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=bucket)
    settings = PipelineSettings(
        bucket=bucket,
        transactions=str(banksim.transactions),
        importance=str(banksim.importance),
        chunk_size=CHUNK,
        max_chunks_per_run=per_run,
        partitions=partitions,
    )
    store = S3Store(client, bucket)
    produce(store, settings, source_opener(lambda: client), 0.0, fast=True)
    return Stream(store, settings, endpoint)


def new_stream(endpoint: str, banksim, detection_runs: int | None, per_run: int = 4) -> Stream:
    """The whole stream uploaded; then ``detection_runs`` detection runs (None: until finished)."""
    stream = uploaded(endpoint, banksim, per_run)
    store, settings = stream.store, stream.settings
    runs = 0
    while detection_runs is None or runs < detection_runs:
        runs += 1
        if detect(store, settings, lively_config(CHUNK)).end_of_stream:
            break
    return Stream(store, settings, endpoint)


@pytest.fixture(scope="module")
def finished(s3_endpoint, small_banksim) -> Stream:
    return new_stream(s3_endpoint, small_banksim, None)


@pytest.fixture(scope="module")
def running(s3_endpoint, small_banksim) -> Stream:
    """Two detection runs of 3 chunks: 6 of 12 chunks processed, the rest waiting."""
    return new_stream(s3_endpoint, small_banksim, 2, per_run=3)


@dataclass(frozen=True)
class PartitionedStream(Stream):
    reports: dict[int, PartitionReport] = field(default_factory=dict)
    """Each partition's last task that committed (none for a partition that never ran)."""


def partitioned_stream(endpoint: str, banksim, partitions: int, runs: list[list[int]], per_run: int) -> PartitionedStream:
    """The whole stream uploaded; then, for each of ``runs``, a ``detect_partition`` task of each
    partition it names and a ``write_detection_files`` task, as the mapped DAG runs them."""
    stream = uploaded(endpoint, banksim, per_run, partitions)
    reports: dict[int, PartitionReport] = {}
    for run in runs:
        for partition in run:
            report = detect_partition(stream.store, stream.settings, partition, lively_config(CHUNK))
            if report.state_version is not None:
                reports[partition] = report
        write_detection_files(stream.store, stream.settings, lively_config(CHUNK))
    return PartitionedStream(stream.store, stream.settings, stream.endpoint, reports)


@pytest.fixture(scope="session")
def partitioned(s3_endpoint, small_banksim) -> PartitionedStream:
    """Three partitions, three DAG runs of 5 chunks: finished, every partition at chunk 12."""
    return partitioned_stream(s3_endpoint, small_banksim, 3, [[0, 1, 2]] * 3, per_run=5)


@pytest.fixture(scope="session")
def partitions_apart(s3_endpoint, small_banksim) -> PartitionedStream:
    """Three partitions at different chunks: partition 0 ran twice (6 chunks), partition 1 once
    (3 chunks), partition 2 never; so no chunk is in the files yet."""
    return partitioned_stream(s3_endpoint, small_banksim, 3, [[0, 1], [0]], per_run=3)
