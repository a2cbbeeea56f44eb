"""End to end through the real scheduler and triggerer: ``make run`` and ``make run-distributed``
(PostgreSQL, Redis, CeleryExecutor, two workers) with the exit flag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from patternflow.local.launcher import port_free
from patternflow.replay import replay
from tests.helpers import file_rows, free_port, lively_config, lively_environment, read_files

PROJECT = Path(__file__).resolve().parents[2]
CHUNK = 5_000

pytestmark = pytest.mark.slow


def native_services_missing() -> str | None:
    from patternflow.local.services import ServiceError, postgres_bin, redis_bin

    try:
        postgres_bin("initdb")
        redis_bin()
    except ServiceError as exc:
        return str(exc)
    return None


def run_to_the_end(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``command`` in the project, its output captured. Past ``timeout``, SIGTERM to its process
    group first, as Ctrl-C would do, so that ``patternflow run`` stops the processes it started in
    sessions of their own, which would otherwise slow every later test; then SIGKILL."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    process = subprocess.Popen(command, cwd=PROJECT, env=env, text=True, start_new_session=True, **pipes)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command[:2])} still running after {timeout:.0f} s: {(stdout + stderr)[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("target", ["run", "run-distributed"])
def test_make_run_streams_the_data_and_exports_the_detection_files(small_banksim, tmp_path, target):
    if target == "run-distributed" and native_services_missing():
        if os.environ.get("REQUIRE_NATIVE_SERVICES"):
            pytest.fail(native_services_missing())
        pytest.skip(native_services_missing())
    data, output = tmp_path / "data", tmp_path / "output"
    data.mkdir()
    for source in (small_banksim.transactions, small_banksim.importance):
        (data / source.name).write_bytes(source.read_bytes())
    s3_port, ui_port = free_port(), free_port()
    flags = f"--exit-when-done --timeout 420 --s3-port {s3_port} --ui-port {ui_port} --metrics {tmp_path / 'metrics.json'}"
    if target == "run-distributed":
        flags += f" --pg-port {free_port()} --redis-port {free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATTERNFLOW_"))} | lively_environment(CHUNK)
    result = run_to_the_end(["make", target, f"DATA={data}", f"OUTPUT={output}", f"RUN_FLAGS={flags}"], env, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f"Airflow UI: http://127.0.0.1:{ui_port}" in result.stdout
    assert "stream complete: 12 chunks, 60,000 rows" in result.stdout

    replay(small_banksim.transactions, small_banksim.importance, tmp_path / "replay", lively_config(CHUNK))
    expected = read_files(tmp_path / "replay")
    got = read_files(output)
    assert list(got) == list(expected) == ["detection_0.csv", "detection_1.csv", "detection_2.csv"]
    for name in expected:
        assert [r[2:] for r in file_rows(got[name])] == [r[2:] for r in file_rows(expected[name])]
        assert all(r[0].endswith("+05:30") and r[1].endswith("+05:30") for r in file_rows(got[name]))

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [m["index"] for m in metrics] == list(range(12))
    # everything it started is gone: both ports are free again
    assert port_free(s3_port) and port_free(ui_port)
    stray = subprocess.run(["pgrep", "-f", f"moto.server -H 127.0.0.1 -p {s3_port}"], capture_output=True)
    assert stray.returncode == 1
    if target == "run-distributed":
        assert "2 Celery workers" in result.stdout
        assert subprocess.run(["pgrep", "-f", "airflow celery worker"], capture_output=True).returncode == 1


def test_a_port_in_use_gets_a_clear_message(tmp_path, small_banksim):
    import socket

    from patternflow.local.launcher import LaunchError, LaunchOptions, run

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        options = LaunchOptions(data=small_banksim.transactions.parent, output=tmp_path, project=PROJECT, s3_port=port)
        with pytest.raises(LaunchError, match=rf"port {port} on 127.0.0.1 is already in use; it is needed for the S3 server"):
            run(options)
