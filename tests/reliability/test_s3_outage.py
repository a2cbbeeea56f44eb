"""The S3 endpoint goes away for 30 s in the middle of the stream, then comes back.

The fault proxy stands in for the server's address: when the detector asks for chunk 6 it
cuts every connection and resets every new one for 30 s, as a stopped server would, while the
objects live on behind it. botocore retries with backoff (5 attempts), the run that was cut
fails with botocore's own error and commits nothing, and the retries (as the DAGs' task
retries: 2 s doubling to at most 30 s) complete the stream with replay's files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from botocore.exceptions import BotoCoreError

from patternflow.pipeline.detector import DetectionReport, detect
from patternflow.pipeline.orchestration import DEFAULT_ARGS
from patternflow.pipeline.producer import produce
from patternflow.pipeline.sources import source_opener
from tests.helpers import lively_config
from tests.reliability.conftest import CHUNK, proxied_store, s3_files, stream_settings

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 30
T = TypeVar("T")


def with_task_retries(call: Callable[[], T], failures: list[Exception], limit: float = 180) -> T:
    """``call`` again after each S3 failure, waiting as Airflow waits between a task's tries."""
    delay = DEFAULT_ARGS["retry_delay"].total_seconds()
    give_up = time.monotonic() + limit
    while True:
        try:
            return call()
        except BotoCoreError as exc:
            failures.append(exc)
            if time.monotonic() > give_up:
                raise
            time.sleep(delay)  # the retry delay itself: there is nothing to poll for
            delay = min(delay * DEFAULT_ARGS["retry_exponential_backoff"], DEFAULT_ARGS["max_retry_delay"].total_seconds())


def test_the_stream_survives_thirty_seconds_without_s3(small_banksim, s3_client, bucket, proxy, replayed):
    settings = stream_settings(bucket, small_banksim, max_chunks_per_run=4)
    store = proxied_store(proxy, bucket)
    opener = source_opener(lambda: s3_client)
    produce(store, settings, opener, 0.0, fast=False)
    produce(store, settings, opener, 11.0, fast=False)  # chunks 0..11 are up
    assert detect(store, settings, lively_config(CHUNK)).chunks == [0, 1, 2, 3]
    went_down = proxy.down_when(r"^GET /[^/]+/transaction_chunks/chunk_6\.csv", OUTAGE_SECONDS)

    with pytest.raises(BotoCoreError):
        detect(store, settings, lively_config(CHUNK))  # cut while reading chunk 6
    assert went_down.is_set() and proxy.down
    assert proxy.refused >= 4  # botocore tried again (with backoff) before giving up

    failures: list[Exception] = []
    # whether the producer's first try still falls in the outage depends on how long botocore's
    # own retries took above; either way the task retries carry it through
    with_task_retries(lambda: produce(store, settings, opener, 29.0, fast=False), failures)
    assert not proxy.down
    reports: list[DetectionReport] = []
    while not (reports and reports[-1].end_of_stream):
        reports.append(with_task_retries(lambda: detect(store, settings, lively_config(CHUNK)), failures))
    assert [c for r in reports for c in r.chunks] == list(range(4, 30))  # the cut run's chunks folded once, later
    assert s3_files(store, settings) == replayed
