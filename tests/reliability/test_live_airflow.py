"""Faults injected into a live Airflow: the DAGs run by a real scheduler and triggerer.

The launcher's building blocks start the api-server, scheduler, dag-processor and triggerer
one by one (LocalExecutor on SQLite, as ``patternflow run``'s standalone), against the S3 server
behind the fault proxy, with a configured access key and secret. One 60-chunk stream takes
both faults in turn, at points the proxy picks out in the detector's requests:

1. when the detector asks for chunk 5, S3 goes away for 30 s: the producer's and the
   detector's tasks fail and are retried with backoff (the producer's missed ticks are caught
   up later) while the scheduler and the triggerer keep running;
2. when the detector asks for chunk 45, that request is held back, so the task is in the
   middle of its run; the scheduler is SIGKILLed with every process it started (the task
   runners included) and a new scheduler is started. It fails the dead task by its missing
   heartbeat and retries it, and the producer goes on.

The stream must end with replay's files: nothing lost, nothing duplicated, no file renumbered.
Then every file under AIRFLOW_HOME (task logs and every component's output) is searched for
the access key and the secret.
"""

from __future__ import annotations

import io
import re
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
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.status import read_progress
from tests.helpers import free_port, lively_environment
from tests.reliability.conftest import replay_files, s3_files

PROJECT = Path(__file__).resolve().parents[2]
CHUNK = 1_000
"""60 chunks of the 60,000-row stream, one a second: long enough for both faults."""
OUTAGE_SECONDS = 30
OUTAGE_AT, KILL_AT = 5, 45
SCHEDULER_TAKEOVER = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
}
"""How soon a new scheduler takes over the dead one's tasks: its running and queued tasks are
reset and tried again once the dead scheduler's heartbeat is 15 s old (looked at every 5 s);
a running task whose heartbeat stopped is failed and retried after 20 s in any case. Airflow's
defaults (30 s, 300 s, 300 s) would only make the test wait longer."""
RUNS_OF_20 = {"PATTERNFLOW_MAX_CHUNKS_PER_RUN": "20"}
"""A detection run takes every chunk waiting; bounded to 20, the run that outlives the outage
commits before the one the kill interrupts, whatever the machine's pace, so that the kill comes
in the middle of the stream with chunks committed since the outage."""

TRY_LOG = re.compile(r"attempt=(\d+)\.log")
RETURNED, FAILED = "Done. Returned value was:", "Task failed with exception"
S3_GONE = ("EndpointConnectionError", "ConnectionClosedError", "ResponseStreamingError")
"""botocore's errors for an endpoint that refuses or cuts the connection (before or while a
response is read)."""

pytestmark = pytest.mark.slow


def chunk_request(bucket: str, index: int) -> str:
    """The detector's GET of a chunk (the sensor only asks with HEAD and LIST)."""
    return rf"^GET /{bucket}/transaction_chunks/chunk_{index}\.csv"


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def task_logs(home: Path, task_id: str) -> list[Path]:
    """Every try's log of a task, in every DAG run (not the triggerer's logs beside them)."""
    return sorted(log for log in (home / "logs").rglob(f"task_id={task_id}/attempt=*.log") if TRY_LOG.fullmatch(log.name))


def next_try(log: Path) -> Path:
    attempt = int(TRY_LOG.fullmatch(log.name)[1])
    return log.with_name(f"attempt={attempt + 1}.log")


def test_a_live_stream_survives_an_s3_outage_and_a_scheduler_kill_and_keeps_its_secrets(
    tmp_path, small_banksim, s3_client, bucket, proxy, monkeypatch
):
    access_key, secret = f"AKIAPF{uuid.uuid4().hex[:14].upper()}", f"pf-secret-{uuid.uuid4().hex}"
    for name, value in lively_environment(CHUNK).items() | {"PATTERNFLOW_BUCKET": bucket}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    expected = replay_files(small_banksim, CHUNK, tmp_path / "replay")
    assert len(expected) >= 2  # several files, so that a renumbering would show
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
    store = S3Store(s3_client, bucket)  # the test's own view of S3, never cut
    outage = proxy.down_when(chunk_request(bucket, OUTAGE_AT), OUTAGE_SECONDS)
    held = proxy.hold(chunk_request(bucket, KILL_AT))
    out = io.StringIO()

    with processes(options.home) as started:
        endpoint, _ = start_s3(options, settings, started, out)
        env = airflow_environment(options, endpoint) | SCHEDULER_TAKEOVER | RUNS_OF_20 | log_server_ports()
        migrate(env, options.home)
        start_components(env, started)
        wait_for_airflow(options, started)

        wait_until(outage.is_set, 300, "the detector never asked for the outage's chunk", started)
        wait_until(lambda: not proxy.down, OUTAGE_SECONDS + 5, "the outage did not end", started)
        assert proxy.refused > 0  # the components kept trying while S3 was gone

        wait_until(held.is_set, 300, f"the detector never asked for chunk {KILL_AT}", started)
        at_kill = read_progress(store, settings)
        assert OUTAGE_AT < at_kill.chunks_folded <= KILL_AT < at_kill.chunks_total  # in the middle of the stream
        kill_scheduler(started)
        start_components(env, started, ["scheduler"])
        wait_until(lambda: read_progress(store, settings).finished, 300, "the stream did not complete", started)
        wait_until(lambda: last_run_returned(options.home), 30, "the last detect_patterns did not return", started)

    assert s3_files(store, settings) == expected
    for task_id in ("upload_due_chunks", "detect_patterns"):
        assert_retried_after_s3_errors(options.home, task_id)
    assert_killed_try_resumed(options.home, at_kill.chunks_folded)
    assert_secrets_absent(options.home, out.getvalue(), (access_key, secret))


def last_run_returned(home: Path) -> bool:
    """The detection run that finished the stream has logged its result (so stopping cuts no task short)."""
    return any(RETURNED in text and "'end_of_stream': True" in text for text in map(Path.read_text, task_logs(home, "detect_patterns")))


def log_server_ports() -> dict[str, str]:
    """Free ports for the scheduler's and the triggerer's log servers (8793 and 8794 may be taken)."""
    return {
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }


def kill_scheduler(started: Processes) -> None:
    """SIGKILL the scheduler and all it started, held-up task included; check that all are gone."""
    root = psutil.Process(started["scheduler"].pid)
    tree = [root, *root.children(recursive=True)]
    assert len(tree) > 2  # the scheduler, its executor's workers and the task it runs
    started.kill("scheduler")
    wait_until(lambda: not any(alive(p) for p in tree), 10, "a process of the killed scheduler is still alive", started)


def assert_retried_after_s3_errors(home: Path, task_id: str) -> None:
    """A try of the task failed for want of S3 (botocore's own retries exhausted) and was retried."""
    cut = [log for log in task_logs(home, task_id) if any(error in log.read_text() for error in S3_GONE)]
    assert cut, f"no try of {task_id} met the outage"
    assert any(next_try(log).is_file() for log in cut), f"{task_id} was not retried after the outage"


def assert_killed_try_resumed(home: Path, folded_at_kill: int) -> None:
    """The try killed with the scheduler neither returned nor failed; its retry resumed at the last commit."""
    killed = [log for log in task_logs(home, "detect_patterns") if not any(end in log.read_text() for end in (RETURNED, FAILED))]
    assert len(killed) == 1, f"one detect_patterns try was killed mid-run, not {killed}"
    assert f"{RETURNED} {{'chunks': [{folded_at_kill}, " in next_try(killed[0]).read_text()


def assert_secrets_absent(home: Path, output: str, secrets: tuple[str, ...]) -> None:
    """No secret in any task log, any component's output, or the launcher's output."""
    for task_id in ("upload_due_chunks", "wait_for_next_chunk", "detect_patterns"):  # the task logs are really there
        # (not every one has content: a try that was starting as Airflow stopped leaves an empty file)
        assert any(path.stat().st_size for path in task_logs(home, task_id)), f"no {task_id} log with content"
    assert any(RETURNED in path.read_text() for path in task_logs(home, "detect_patterns"))
    files = [path for path in home.rglob("*") if path.is_file() and path.suffix != ".db"]
    assert {"scheduler.log", "triggerer.log", "api-server.log"} <= {path.name for path in files}
    for secret in secrets:
        assert secret not in output
        leaking = [str(path) for path in files if secret.encode() in path.read_bytes()]
        assert not leaking, f"a connection secret is in {leaking}"
