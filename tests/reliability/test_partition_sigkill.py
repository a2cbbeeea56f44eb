"""SIGKILL of a partition task or of the merge at each stage: the stream still ends with replay's files.

Each killed call is a real ``detect_partition`` or ``write_detection_files`` in a child process
talking to the S3 server through the fault proxy. The proxy holds back one chosen request, so
the test knows the child has got exactly that far (and no further) when it kills it. Then the
other partition runs ahead, the killed task is retried as Airflow retries it, the merge goes on
between them, and every chunk is merged exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from patternflow.pipeline.layout import partition_state_prefix, staged_key
from patternflow.pipeline.partitioned import detect_partition, write_detection_files
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.sources import source_opener
from patternflow.pipeline.status import read_chunk_metrics, read_progress
from tests.helpers import lively_config
from tests.reliability.conftest import CHUNK, s3_files, stream_settings
from tests.reliability.proxy import FaultProxy

PROJECT = Path(__file__).resolve().parents[2]
CHUNKS = 30
RETURNED = "driver/returned"
"""A key the child asks for (HEAD) once the call has returned: holding that request is holding
the process after everything the call wrote, before anything the task would do next."""

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent(
    """
    import json, sys
    from patternflow.pipeline.partitioned import detect_partition, write_detection_files
    from patternflow.pipeline.s3 import S3Store, endpoint_client
    from patternflow.pipeline.settings import PipelineSettings
    from tests.helpers import lively_config

    endpoint, settings_json, task, returned = sys.argv[1:]
    settings = PipelineSettings(**json.loads(settings_json))
    store = S3Store(endpoint_client(endpoint, access_key="test", secret_key="test"), settings.bucket)
    config = lively_config(settings.chunk_size)
    if task == "merge":
        write_detection_files(store, settings, config)
    else:
        detect_partition(store, settings, int(task), config)
    store.exists(returned)
    """
)


def start_driver(proxy: FaultProxy, settings: PipelineSettings, task: str) -> subprocess.Popen:
    """``detect_partition`` (task: the partition's number) or the merge (``merge``) in a process of its own."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(PROJECT / "include"), str(PROJECT)])}
    args = [proxy.url, json.dumps(settings.to_json()), task, RETURNED]
    return subprocess.Popen([sys.executable, "-c", DRIVER, *args], env=env, cwd=PROJECT, stderr=subprocess.PIPE, text=True)


def kill_when_held(proxy: FaultProxy, pattern: str, settings: PipelineSettings, task: str, at_hold) -> None:
    """Run ``task`` in a child until it sends the request matching ``pattern``; check ``at_hold()``
    while it waits there, then SIGKILL it."""
    held = proxy.hold(pattern)
    driver = start_driver(proxy, settings, task)
    try:
        if not held.wait(timeout=120):
            driver.kill()
            pytest.fail(f"the child never reached {pattern}: {driver.communicate()[1][-3000:]}")
        at_hold()
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.communicate()
    assert driver.returncode == -signal.SIGKILL


def committed(store: S3Store, settings: PipelineSettings, partition: int) -> int:
    """The chunks partition ``partition`` has committed (its CURRENT)."""
    return json.loads(store.get(f"{partition_state_prefix(settings, partition)}CURRENT"))["chunks_folded"]


def started_stream(s3_client, bucket: str, banksim) -> tuple[S3Store, PipelineSettings]:
    """The whole stream uploaded; one DAG run done (both partitions and the merge: chunks 0..3)."""
    settings = stream_settings(bucket, banksim, partitions=2, max_chunks_per_run=4)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    for partition in (0, 1):
        assert detect_partition(store, settings, partition, lively_config(CHUNK)).chunks == [0, 1, 2, 3]
    assert write_detection_files(store, settings, lively_config(CHUNK)).chunks == [0, 1, 2, 3]
    return store, settings


def to_the_end(store: S3Store, settings: PipelineSettings) -> tuple[dict[int, list[int]], list[int]]:
    """DAG runs until the stream is finished: the chunks each partition folded and those merged."""
    folded: dict[int, list[int]] = {0: [], 1: []}
    merged: list[int] = []
    for _ in range(CHUNKS):
        for partition in (0, 1):
            folded[partition] += detect_partition(store, settings, partition, lively_config(CHUNK)).chunks
        report = write_detection_files(store, settings, lively_config(CHUNK))
        merged += report.chunks
        if report.end_of_stream:
            return folded, merged
    pytest.fail("the stream did not finish")


def assert_replays_files_once(store: S3Store, settings: PipelineSettings, merged: list[int], replayed) -> None:
    assert merged == list(range(4, CHUNKS))  # every chunk after the first run merged once, in order
    progress = read_progress(store, settings)
    assert progress.finished and progress.chunks_folded == CHUNKS
    assert [m["index"] for m in read_chunk_metrics(store, settings)] == list(range(CHUNKS))
    assert s3_files(store, settings) == replayed


PARTITION_STAGES = {
    # stage: (request held back, chunks partition 0 has committed when it is killed)
    "reading a chunk": (r"^GET /[^/]+/transaction_chunks/chunk_6\.csv", 4),
    "staged, its CURRENT not yet": (r"^PUT /[^/]+/state/partitions/0/CURRENT(\?|$)", 4),
    "its CURRENT, the merge not yet": (rf"^HEAD /[^/]+/{RETURNED}", 8),
}


@pytest.mark.parametrize("stage", list(PARTITION_STAGES))
def test_a_partition_task_killed_at_any_stage_is_redone_exactly_once(stage, small_banksim, s3_client, bucket, proxy, replayed):
    """Partition 0 is killed in its second run (chunks 4..7). Its retry resumes at its committed
    position and replaces what the dead run staged; partition 1 runs ahead meanwhile, and the
    merge takes only the chunks both have committed."""
    store, settings = started_stream(s3_client, bucket, small_banksim)
    pattern, committed_at_kill = PARTITION_STAGES[stage]

    def at_hold() -> None:
        staged = store.exists(staged_key(settings, 0, 4, 7))
        assert staged == (stage != "reading a chunk")  # staged before the commit, never after
        assert committed(store, settings, 0) == committed_at_kill

    kill_when_held(proxy, pattern, settings, "0", at_hold)
    assert committed(store, settings, 0) == committed_at_kill

    retried = detect_partition(store, settings, 0, lively_config(CHUNK)).chunks  # Airflow's retry of the killed task
    assert retried == list(range(committed_at_kill, committed_at_kill + 4))
    ahead = [c for _ in range(3) for c in detect_partition(store, settings, 1, lively_config(CHUNK)).chunks]
    assert ahead == list(range(4, 16))  # partition 1 runs three runs ahead
    first_merge = write_detection_files(store, settings, lively_config(CHUNK)).chunks
    assert first_merge == list(range(4, committed_at_kill + 4))  # up to partition 0's position, no further
    folded, merged = to_the_end(store, settings)

    assert retried + folded[0] == list(range(committed_at_kill, CHUNKS))  # each chunk folded once after the kill
    assert ahead + folded[1] == list(range(4, CHUNKS))
    assert_replays_files_once(store, settings, first_merge + merged, replayed)


MERGE_STAGES = {
    # stage: (request held back, detection files written when it is killed)
    "after some detection files": (r"^PUT /[^/]+/output_detections/detection_1\.csv", ["detection_0.csv"]),
    "every file written, CURRENT not yet": (r"^PUT /[^/]+/state/CURRENT(\?|$)", ["detection_0.csv", "detection_1.csv"]),
}


@pytest.mark.parametrize("stage", list(MERGE_STAGES))
def test_a_merge_killed_before_its_commit_rewrites_the_same_files(stage, small_banksim, s3_client, bucket, proxy, replayed):
    """Both partitions have committed chunks up to 23; the merge of 4..23 is killed after writing
    files but before the stream's CURRENT. Its retry merges the same chunks again and writes the
    same rows under the same names: no file twice, no row twice, none lost."""
    store, settings = started_stream(s3_client, bucket, small_banksim)
    for partition in (0, 1):
        for _ in range(5):
            detect_partition(store, settings, partition, lively_config(CHUNK))
        assert committed(store, settings, partition) == 24
    pattern, written = MERGE_STAGES[stage]

    def at_hold() -> None:
        assert list(s3_files(store, settings)) == written
        assert read_progress(store, settings).chunks_folded == 4

    kill_when_held(proxy, pattern, settings, "merge", at_hold)
    assert read_progress(store, settings).chunks_folded == 4  # the killed merge committed nothing
    assert [m["index"] for m in read_chunk_metrics(store, settings)] == [0, 1, 2, 3]

    retried = write_detection_files(store, settings, lively_config(CHUNK)).chunks
    assert retried == list(range(4, 24))
    _, merged = to_the_end(store, settings)
    assert_replays_files_once(store, settings, retried + merged, replayed)
