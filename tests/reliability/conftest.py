"""Fixtures of the reliability tests: the fault proxy, the stream they all use and its replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from patternflow.pipeline.s3 import S3Store, endpoint_client
from patternflow.pipeline.settings import PipelineSettings
from patternflow.replay import replay
from tests.helpers import file_rows, lively_config, read_files
from tests.reliability.proxy import FaultProxy

CHUNK = 2_000
"""30 chunks of the 60,000-row stream: detection_0 is written at chunk 11, detection_1 at 19."""


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(urlparse(s3_endpoint).port)
    yield fault_proxy
    fault_proxy.close()


def proxied_store(proxy: FaultProxy, bucket: str) -> S3Store:
    return S3Store(endpoint_client(proxy.url, access_key="test", secret_key="test"), bucket)


def stream_settings(bucket: str, banksim, **extra) -> PipelineSettings:
    return PipelineSettings(
        bucket=bucket, transactions=str(banksim.transactions), importance=str(banksim.importance), chunk_size=CHUNK, **extra
    )


def without_times(text: str) -> list[list[str]]:
    """A detection file's rows less YStartTime and detectionTime, which are wall-clock times."""
    return [row[2:] for row in file_rows(text)]


def s3_files(store: S3Store, settings: PipelineSettings) -> dict[str, list[list[str]]]:
    return {k.rsplit("/", 1)[1]: without_times(store.get(k).decode()) for k in store.list(settings.output_prefix)}


def replay_files(banksim, chunk_size: int, out: Path) -> dict[str, list[list[str]]]:
    """The detection files of an uninterrupted ``replay`` of the stream, less the time columns."""
    replay(banksim.transactions, banksim.importance, out, lively_config(chunk_size))
    return {name: without_times(text) for name, text in read_files(out).items()}


@pytest.fixture(scope="session")
def replayed(small_banksim, tmp_path_factory) -> dict[str, list[list[str]]]:
    """Replay's files for ``CHUNK``-row chunks: what every test of this stream must end with."""
    files = replay_files(small_banksim, CHUNK, tmp_path_factory.mktemp("reliability-replay"))
    assert list(files) == ["detection_0.csv", "detection_1.csv", "detection_2.csv"]
    return files
