"""A live Airflow with two merchant partitions: a running ``detect_partition`` task is SIGKILLed.

The launcher's building blocks start the api-server, scheduler, dag-processor and triggerer
(LocalExecutor on SQLite) with PATTERNFLOW_PARTITIONS=2 in their environment, so the detection
DAG is parsed mapped: ``wait_for_next_chunk >> detect_partition[0, 1] >> write_detection_files``.
The producer uploads the 30-chunk stream, one chunk a second, through the fault proxy.

When a partition task asks for chunk 20, the proxy holds that request back: the task is in the
middle of its run. The test finds the process that sent the request (the task runner, among
this test's scheduler's descendants, by the request's TCP connection), checks in the metadata
database that it is that ``detect_partition`` task instance, and SIGKILLs it alone. Its
supervisor reports the try failed, Airflow retries it, the retry resumes at the partition's
last commit, and the merge goes on: the stream ends with replay's files, each chunk merged once.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import sqlite3
import threading
import uuid
from pathlib import Path

import psutil
import pytest

from patternflow.local.launcher import (
    LaunchOptions,
    Processes,
    airflow_environment,
    migrate,
    processes,
    start_components,
    start_s3,
    wait_for_airflow,
    wait_until,
)
from patternflow.pipeline.layout import partition_state_prefix
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.status import read_chunk_metrics, read_progress
from tests.helpers import free_port, lively_environment
from tests.reliability.conftest import CHUNK, s3_files
from tests.reliability.proxy import FaultProxy
from tests.reliability.test_live_airflow import FAILED, RETURNED, alive, log_server_ports, next_try, task_logs

PROJECT = Path(__file__).resolve().parents[2]
CHUNKS = 30
KILL_AT = 20
TASK_TITLE = re.compile(r"airflow worker -- ([0-9a-f-]{36})")
"""The title Airflow's task runner gives its process: the task instance's id."""
MERGED = re.compile(re.escape(RETURNED) + r" \{'chunks': \[([^\]]*)\]")

pytestmark = pytest.mark.slow


class PeerProxy(FaultProxy):
    """The fault proxy, which also tells which client connection the held request came on."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.held_from: int | None = None
        """The client's local port of the held request's connection."""
        self.held_known = threading.Event()

    def _wait_for_close(self, client: socket.socket) -> None:  # called for the held request only
        self.held_from = client.getpeername()[1]
        self.held_known.set()
        super()._wait_for_close(client)


@pytest.fixture
def peer_proxy(s3_endpoint: str):
    from urllib.parse import urlparse

    proxy = PeerProxy(urlparse(s3_endpoint).port)
    yield proxy
    proxy.close()


def test_a_killed_partition_task_is_retried_by_airflow_and_the_stream_ends_with_replays_files(
    tmp_path, small_banksim, s3_client, bucket, peer_proxy, monkeypatch, replayed
):
    proxy = peer_proxy
    environment = lively_environment(CHUNK) | {"PATTERNFLOW_BUCKET": bucket, "PATTERNFLOW_PARTITIONS": "2"}
    for name, value in environment.items() | {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)
    options = LaunchOptions(
        data=small_banksim.transactions.parent,
        output=tmp_path / "output",
        project=PROJECT,
        s3_endpoint=proxy.url,
        ui_port=free_port(),
        airflow_home=tmp_path / "airflow",
    )
    options.home.mkdir()
    settings = PipelineSettings.resolve()
    assert settings.partitions == 2
    store = S3Store(s3_client, bucket)  # the test's own view of S3, never held
    held = proxy.hold(rf"^GET /{bucket}/transaction_chunks/chunk_{KILL_AT}\.csv")

    with processes(options.home) as started:
        endpoint, _ = start_s3(options, settings, started, io.StringIO())
        env = airflow_environment(options, endpoint) | log_server_ports()
        migrate(env, options.home)
        start_components(env, started)
        wait_for_airflow(options, started)

        wait_until(held.is_set, 300, f"no partition task asked for chunk {KILL_AT}", started)
        assert proxy.held_known.wait(10)
        runner = process_on_port(started, proxy.held_from)
        task = task_instance(options.home, runner)
        assert (task["task_id"], task["state"], task["pid"]) == ("detect_partition", "running", runner.pid)
        partition = task["map_index"]
        folded_at_kill = committed(store, settings, partition)
        assert folded_at_kill <= KILL_AT  # the killed run was to fold chunk 20 and has not committed it
        os.kill(runner.pid, signal.SIGKILL)
        wait_until(lambda: not alive(runner), 10, "the killed task runner is still alive", started)

        wait_until(lambda: read_progress(store, settings).finished, 300, "the stream did not complete", started)
        wait_until(lambda: last_merge_returned(options.home), 30, "the last write_detection_files did not return", started)

    assert s3_files(store, settings) == replayed
    assert [m["index"] for m in read_chunk_metrics(store, settings)] == list(range(CHUNKS))
    assert merged_chunks(options.home) == list(range(CHUNKS))  # each chunk merged once, none left out
    assert_killed_try_retried(options.home, task, folded_at_kill)


def process_on_port(started: Processes, port: int | None) -> psutil.Process:
    """The process, among those this test's scheduler started, whose TCP connection has local port ``port``."""
    scheduler = psutil.Process(started["scheduler"].pid)
    for process in scheduler.children(recursive=True):
        try:
            if any(c.laddr and c.laddr.port == port for c in process.net_connections(kind="tcp")):
                return process
        except psutil.NoSuchProcess:
            continue
    pytest.fail(f"no process of this test's scheduler has the held connection (port {port})")


def task_instance(home: Path, runner: psutil.Process) -> dict:
    """The task instance a task runner process runs, from its title and the metadata database."""
    title = TASK_TITLE.search(" ".join(runner.cmdline()))
    assert title, f"not a task runner: {runner.cmdline()}"
    with sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT id, task_id, run_id, map_index, try_number, state, pid FROM task_instance WHERE replace(id, '-', '') = ?",
            (uuid.UUID(title[1]).hex,),
        ).fetchone()
    assert row is not None, f"no task instance {title[1]}"
    return dict(row)


def committed(store: S3Store, settings: PipelineSettings, partition: int) -> int:
    """The chunks partition ``partition`` has committed (0 before its first commit)."""
    try:
        return json.loads(store.get(f"{partition_state_prefix(settings, partition)}CURRENT"))["chunks_folded"]
    except KeyError:
        return 0


def last_merge_returned(home: Path) -> bool:
    """The merge that finished the stream has logged its result (so stopping cuts no task short)."""
    logs = task_logs(home, "write_detection_files")
    return any(RETURNED in text and "'end_of_stream': True" in text for text in map(Path.read_text, logs))


def merged_chunks(home: Path) -> list[int]:
    """The chunks every returned ``write_detection_files`` try merged, all runs together, sorted."""
    lists = [found for log in task_logs(home, "write_detection_files") for found in MERGED.findall(log.read_text())]
    chunks = [int(c) for found in lists for c in found.split(",") if c.strip()]
    return sorted(chunks)


def assert_killed_try_retried(home: Path, task: dict, folded_at_kill: int) -> None:
    """The killed try neither returned nor raised; Airflow ran the next try, which resumed at the
    partition's last commit and took the chunk the killed try was reading."""
    folder = home / "logs" / "dag_id=pattern_detection" / f"run_id={task['run_id']}" / "task_id=detect_partition"
    killed = folder / f"map_index={task['map_index']}" / f"attempt={task['try_number']}.log"
    assert not any(end in killed.read_text() for end in (RETURNED, FAILED)), killed.read_text()[-3000:]
    retry = next_try(killed).read_text()
    returned = re.search(re.escape(RETURNED) + r" \{'partition': (\d+), 'chunks': \[([^\]]*)\]", retry)
    assert returned, retry[-3000:]
    chunks = [int(c) for c in returned[2].split(",")]
    assert int(returned[1]) == task["map_index"]
    assert chunks[0] == folded_at_kill and KILL_AT in chunks
