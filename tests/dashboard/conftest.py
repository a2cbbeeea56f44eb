"""Streams for the dashboard tests: the small generated stream produced and detected in-process
against the S3 server on 127.0.0.1 (the real producer, detector and S3 client)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from patternflow.pipeline.detector import detect
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


def new_stream(endpoint: str, banksim, detection_runs: int | None, per_run: int = 4) -> Stream:
    """The whole stream uploaded; then ``detection_runs`` detection runs (None: until finished)."""
    client = endpoint_client(endpoint, access_key="test", secret_key="test")
    bucket = f"pf-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=bucket)
    settings = PipelineSettings(
        bucket=bucket,
        transactions=str(banksim.transactions),
        importance=str(banksim.importance),
        chunk_size=CHUNK,
        max_chunks_per_run=per_run,
    )
    store = S3Store(client, bucket)
    produce(store, settings, source_opener(lambda: client), 0.0, fast=True)
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
