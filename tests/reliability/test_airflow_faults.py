"""Faults through the real DAGs, one ``airflow dags test`` process a run (as tests/e2e does).

* A detection run is SIGKILLed in the middle of ``detect_patterns``, its whole process group
  at once, as when the worker that runs it dies: the next DAG run resumes from the last commit
  and the stream completes with replay's files. (A scheduler killed and restarted under a live
  Airflow is ``test_live_airflow.py``.)
* No secret of the ``aws_default`` connection appears in a task log or the command output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.status import read_progress
from tests.airflow_runs import AIRFLOW, PROJECT, airflow
from tests.airflow_runs import airflow_environment as shared_environment
from tests.reliability.conftest import CHUNK, s3_files

pytestmark = pytest.mark.slow


def airflow_environment(home: Path, endpoint: str, bucket: str, banksim, login: str = "test", password: str = "test") -> dict[str, str]:
    """The shared Airflow test environment, with runs that take every chunk waiting."""
    return shared_environment(home, endpoint, bucket, banksim, CHUNK, {"max_chunks_per_run": 100}, login, password)


def test_a_dag_run_killed_mid_task_is_resumed_by_the_next_run(tmp_path, small_banksim, s3_client, bucket, proxy, replayed):
    env = airflow_environment(tmp_path / "airflow", proxy.url, bucket, small_banksim)
    store, settings = S3Store(s3_client, bucket), PipelineSettings(bucket=bucket)
    airflow(env, "db", "migrate")
    airflow(env, "dags", "test", "transaction_producer")  # the whole stream, with its end marker
    # a task of one run of 4 chunks (a task would otherwise go on with the next runs)
    first = env | {"AIRFLOW_VAR_PATTERNFLOW_SETTINGS": json.dumps({"max_chunks_per_run": 4, "keep_running_seconds": 0})}
    assert "Returned value was: {'chunks': [0, 1, 2, 3]" in airflow(first, "dags", "test", "pattern_detection")

    held = proxy.hold(r"^GET /[^/]+/transaction_chunks/chunk_13\.csv")  # detection_0 is written by then
    # Its output goes to a file: a pipe that is read only after the kill would stop the run at its
    # 64 KB of logs, before it reaches chunk 13 (about 11 KB are written by then today).
    output = tmp_path / "killed-run.log"
    with output.open("wb") as out:
        run = subprocess.Popen(
            [AIRFLOW, "dags", "test", "pattern_detection"],
            env=env,
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert held.wait(timeout=240), f"the run never reached chunk 13: {output.read_text()[-3000:]}"
        assert list(s3_files(store, settings)) == ["detection_0.csv"]
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert read_progress(store, settings).chunks_folded == 4  # the killed run committed nothing

    log = airflow(env, "dags", "test", "pattern_detection")
    assert f"Returned value was: {{'chunks': {list(range(4, 30))}" in log
    assert read_progress(store, settings).finished
    assert s3_files(store, settings) == replayed


def test_connection_secrets_never_reach_the_logs(tmp_path, small_banksim, s3_endpoint, s3_client, bucket):
    """Airflow masks the connection's secrets in task logs; nothing of ours prints them either.

    ``airflow dags test`` runs the tasks in its own process and writes their logs to its output,
    so the output is checked, and every file Airflow left under AIRFLOW_HOME as well. The login
    (the access key id) is checked too, although Airflow only promises to mask the password:
    neither may be logged by patternflow's code or by the Amazon provider."""
    login, password = f"AKIAPF{uuid.uuid4().hex[:14].upper()}", f"pf-secret-{uuid.uuid4().hex}"
    home = tmp_path / "airflow"
    env = airflow_environment(home, s3_endpoint, bucket, small_banksim, login=login, password=password)
    output = airflow(env, "db", "migrate")
    output += airflow(env, "dags", "test", "transaction_producer")
    output += airflow(env, "dags", "test", "pattern_detection")
    assert read_progress(S3Store(s3_client, bucket), PipelineSettings(bucket=bucket)).finished

    assert "detect_patterns" in output and "Returned value was: {'chunks': [" in output  # the task logs are there
    files = [path for path in home.rglob("*") if path.is_file() and path.suffix != ".db"]  # the database keeps runs, not logs
    for secret in (login, password):
        assert secret not in output
        leaking = [str(path) for path in files if secret.encode() in path.read_bytes()]
        assert not leaking, f"a connection secret is in {leaking}"
