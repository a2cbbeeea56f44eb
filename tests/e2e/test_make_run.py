"""End to end through the real scheduler and triggerer: ``make run`` and ``make run-distributed``
(PostgreSQL, Redis, CeleryExecutor, two workers) with the exit flag, and the distributed run with
detection mapped over merchant partitions across both workers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections import defaultdict
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


def require_native_services() -> None:
    """Skip without PostgreSQL and Redis installed; fail instead under REQUIRE_NATIVE_SERVICES (CI)."""
    missing = native_services_missing()
    if missing and os.environ.get("REQUIRE_NATIVE_SERVICES"):
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)


def copy_data(banksim, folder: Path) -> Path:
    folder.mkdir()
    for source in (banksim.transactions, banksim.importance):
        (folder / source.name).write_bytes(source.read_bytes())
    return folder


def assert_replays_files(banksim, output: Path, replay_folder: Path) -> None:
    """The exported files are replay's, less the two wall-clock time columns, which are IST."""
    replay(banksim.transactions, banksim.importance, replay_folder, lively_config(CHUNK))
    expected = read_files(replay_folder)
    got = read_files(output)
    assert list(got) == list(expected) == ["detection_0.csv", "detection_1.csv", "detection_2.csv"]
    for name in expected:
        assert [r[2:] for r in file_rows(got[name])] == [r[2:] for r in file_rows(expected[name])]
        assert all(r[0].endswith("+05:30") and r[1].endswith("+05:30") for r in file_rows(got[name]))


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
    if target == "run-distributed":
        require_native_services()
    data, output = copy_data(small_banksim, tmp_path / "data"), tmp_path / "output"
    s3_port, ui_port = free_port(), free_port()
    flags = f"--exit-when-done --timeout 420 --s3-port {s3_port} --ui-port {ui_port} --metrics {tmp_path / 'metrics.json'}"
    if target == "run-distributed":
        flags += f" --pg-port {free_port()} --redis-port {free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATTERNFLOW_"))} | lively_environment(CHUNK)
    result = run_to_the_end(["make", target, f"DATA={data}", f"OUTPUT={output}", f"RUN_FLAGS={flags}"], env, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f"Airflow UI: http://127.0.0.1:{ui_port}" in result.stdout
    assert "stream complete: 12 chunks, 60,000 rows" in result.stdout

    assert_replays_files(small_banksim, output, tmp_path / "replay")

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [m["index"] for m in metrics] == list(range(12))
    # everything it started is gone: both ports are free again
    assert port_free(s3_port) and port_free(ui_port)
    stray = subprocess.run(["pgrep", "-f", f"moto.server -H 127.0.0.1 -p {s3_port}"], capture_output=True)
    assert stray.returncode == 1
    if target == "run-distributed":
        assert "2 Celery workers" in result.stdout
        assert subprocess.run(["pgrep", "-f", "airflow celery worker"], capture_output=True).returncode == 1


PARTITIONS = 4
WORKERS = ("worker1", "worker2")
RUN_FOLDER = PROJECT / ".run"
"""Where ``make run-distributed`` keeps its PostgreSQL cluster and its processes' logs."""


def task_instances(task_id: str, logs: Path) -> list[dict]:
    """``task_id``'s instances of pattern_detection in Airflow's metadata database, after the run.

    The launcher stopped its PostgreSQL on the way out; its cluster stays under .run/ until the
    next run replaces the database, so it is started again here, on a port of its own, and asked."""
    from patternflow.local import services
    from patternflow.local.launcher import processes, wait_until

    data, port = services.init_postgres(RUN_FOLDER / "postgres"), free_port()
    query = (
        "SELECT coalesce(json_agg(t), '[]') FROM (SELECT id, run_id, map_index, state, hostname, pid FROM task_instance "
        f"WHERE dag_id = 'pattern_detection' AND task_id = '{task_id}') t"
    )
    psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", services.ROLE, "-d", services.DATABASE, "-tAc", query]
    with processes(logs) as started:
        started.start("postgres", services.postgres_command(data, port))
        wait_until(lambda: services.postgres_ready(port), 60, f"PostgreSQL did not start again; see {logs}/postgres.log", started)
        result = subprocess.run(psql, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def workers_that_ran(task_id: str) -> dict[str, set[str]]:
    """Task instance id -> the Celery workers whose log says they executed it.

    On one machine every worker reports the same hostname to Airflow, and a task instance's pid is
    that of its own task process, gone with it; each worker's log names the task instances it ran."""
    executed = re.compile(rf"Executing workload in Celery: .*ti=TaskInstanceDTO\(id=UUID\('([0-9a-f-]+)'\), task_id='{task_id}'")
    ran_on: dict[str, set[str]] = defaultdict(set)
    for worker in WORKERS:
        for line in (RUN_FOLDER / "airflow" / f"{worker}.log").read_text(errors="replace").splitlines():
            if found := executed.search(line):
                ran_on[found.group(1)].add(worker)
    return ran_on


def test_make_run_distributed_maps_detection_over_partitions_on_both_workers(small_banksim, tmp_path):
    """--partitions 4 with two workers of two slots each: every run maps detect_partition over the
    four partitions, the tasks run on both workers, and the files are replay's.

    Two slots a worker (one often taken by the producer) and at most four chunks a run: each run's
    four tasks cannot all be held by one worker at once, and there are at least three runs."""
    require_native_services()
    data, output = copy_data(small_banksim, tmp_path / "data"), tmp_path / "output"
    s3_port, ui_port = free_port(), free_port()
    flags = (
        f"--partitions {PARTITIONS} --workers {len(WORKERS)} --worker-concurrency 2 --exit-when-done --timeout 480 "
        f"--s3-port {s3_port} --ui-port {ui_port} --pg-port {free_port()} --redis-port {free_port()}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATTERNFLOW_"))} | lively_environment(CHUNK)
    env["PATTERNFLOW_MAX_CHUNKS_PER_RUN"] = "4"
    result = run_to_the_end(["make", "run-distributed", f"DATA={data}", f"OUTPUT={output}", f"RUN_FLAGS={flags}"], env, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f"detection over {PARTITIONS} merchant partitions" in result.stdout
    assert f"{len(WORKERS)} Celery workers" in result.stdout
    assert "stream complete: 12 chunks, 60,000 rows" in result.stdout
    assert_replays_files(small_banksim, output, tmp_path / "replay")
    assert port_free(s3_port) and port_free(ui_port)
    assert subprocess.run(["pgrep", "-f", "airflow celery worker"], capture_output=True).returncode == 1

    # @continuous: a run may have begun after the stream was complete, before everything stopped
    instances = task_instances("detect_partition", tmp_path)
    last_run = max(i["run_id"] for i in instances)
    ran = [i for i in instances if i["state"] == "success"]
    assert all(i["run_id"] == last_run for i in instances if i not in ran), instances
    by_run: dict[str, list[int]] = defaultdict(list)
    for instance in ran:
        by_run[instance["run_id"]].append(instance["map_index"])
    assert sum(sorted(indexes) == list(range(PARTITIONS)) for indexes in by_run.values()) >= 3, by_run
    assert all(i["hostname"] and i["pid"] for i in ran), ran
    ran_on = workers_that_ran("detect_partition")
    assert all(ran_on.get(i["id"]) for i in ran), "a detect_partition task instance in no worker's log"
    assert set().union(*(ran_on[i["id"]] for i in ran)) == set(WORKERS)


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
