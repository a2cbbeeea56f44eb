"""``patternflow run``'s building blocks: process groups, ports, export, the project folder."""

from __future__ import annotations

import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from patternflow.local.launcher import (
    LaunchError,
    LaunchOptions,
    Processes,
    Stopped,
    _failed_runs,
    export,
    find_project,
    port_free,
    run,
    start_s3,
    stop_group,
    wait_until,
)
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from tests.helpers import free_port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return not state.startswith("Z")


def test_stopping_a_process_stops_its_children_too(tmp_path):
    pids = tmp_path / "pids"
    parent = subprocess.Popen(
        ["bash", "-c", f"sleep 300 & echo $! > {pids}; trap '' TERM; sleep 300"], start_new_session=True
    )  # the parent ignores SIGTERM: stop_group must fall back to SIGKILL
    deadline = time.monotonic() + 10
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pids.read_text())
    stop_group(parent, grace=1.0)
    time.sleep(0.2)
    assert not alive(parent.pid) and not alive(child)


def test_killing_a_process_kills_the_descendants_that_lead_groups_of_their_own(tmp_path):
    """As Airflow's task runners do: they would outlive a SIGKILL of the scheduler's group alone."""
    pids = tmp_path / "pids"
    started = Processes(tmp_path)
    # the detached process writes its own pid once it leads its own session: $! could be read before setsid ran
    started.start("parent", ["bash", "-c", f"setsid bash -c 'echo $$ > {pids}; exec sleep 300' & sleep 300"])
    deadline = time.monotonic() + 10
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    detached = int(pids.read_text())
    assert os.getpgid(detached) != os.getpgid(started["parent"].pid)
    parent = started["parent"]
    started.kill("parent")
    deadline = time.monotonic() + 10
    while alive(detached) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(parent.pid) and not alive(detached)
    assert parent.returncode == -9
    started.start("parent", ["true"]).wait()  # the name is free again: the process can be restarted


def test_an_external_s3_endpoint_gets_its_bucket_and_no_server_of_ours(s3_endpoint, s3_client, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    bucket = f"pf-{uuid.uuid4().hex[:20]}"
    options = LaunchOptions(data=tmp_path, output=tmp_path, project=Path.cwd(), s3_endpoint=s3_endpoint)
    assert all("S3" not in what for _, what in options.ports())
    started = Processes(tmp_path)
    for _ in range(2):  # the second time the bucket is already there
        endpoint, _client = start_s3(options, PipelineSettings(bucket=bucket), started, io.StringIO())
    assert endpoint == s3_endpoint and not list(started)
    assert bucket in {b["Name"] for b in s3_client.list_buckets()["Buckets"]}


def test_port_free_sees_a_listening_socket():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_free(port)
    assert port_free(port)


def test_export_replaces_the_detection_files_of_an_earlier_run(s3_client, bucket, tmp_path):
    settings = PipelineSettings(bucket=bucket)
    store = S3Store(s3_client, bucket)
    store.put(settings.output_prefix + "detection_0.csv", b"new 0")
    (tmp_path / "detection_0.csv").write_text("old 0")
    (tmp_path / "detection_7.csv").write_text("old 7")
    (tmp_path / "notes.txt").write_text("kept")
    written = export(store, settings, tmp_path)
    assert [p.name for p in written] == ["detection_0.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detection_0.csv", "notes.txt"]
    assert (tmp_path / "detection_0.csv").read_text() == "new 0"


def test_the_project_is_found_from_inside_it(tmp_path):
    root = find_project()
    assert (root / "dags" / "pattern_detection.py").is_file()
    assert find_project(root / "include" / "patternflow") == root


def test_outside_a_project_the_package_location_decides(tmp_path):
    try:
        assert (find_project(tmp_path) / "dags").is_dir()
    except LaunchError as exc:
        pytest.fail(f"an editable install finds its project: {exc}")


@pytest.mark.parametrize("distributed", [False, True])
def test_airflow_loads_the_projects_plugins_in_both_modes(tmp_path, distributed):
    """The "Pattern detections" page is a plugin: standalone and distributed runs both serve it."""
    from patternflow.local.launcher import LaunchOptions, airflow_environment

    project = find_project()
    options = LaunchOptions(data=tmp_path, output=tmp_path, project=project, distributed=distributed)
    env = airflow_environment(options, "http://127.0.0.1:5055")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(project / "plugins")
    assert (project / "plugins" / "patternflow_dashboard.py").is_file()


@pytest.mark.parametrize("distributed", [False, True])
def test_partitions_reach_every_airflow_process_only_when_asked(tmp_path, monkeypatch, distributed):
    """``run --partitions N`` sets PATTERNFLOW_PARTITIONS for every component (the DAG is parsed
    with it); without it, the caller's setting passes through, and with none the DAGs see none (1)."""
    from patternflow.cli import build_parser
    from patternflow.local.launcher import airflow_environment

    def partitions(argv: list[str]) -> str | None:
        args = build_parser().parse_args(["run", *argv])
        options = LaunchOptions(data=tmp_path, output=tmp_path, project=find_project(), distributed=distributed, partitions=args.partitions)
        env = airflow_environment(options, "http://127.0.0.1:5055")
        assert PipelineSettings.resolve({}, environ=env).partitions == int(env.get("PATTERNFLOW_PARTITIONS", "1"))
        return env.get("PATTERNFLOW_PARTITIONS")

    monkeypatch.delenv("PATTERNFLOW_PARTITIONS", raising=False)
    assert partitions([]) is None
    assert partitions(["--partitions", "4"]) == "4"
    monkeypatch.setenv("PATTERNFLOW_PARTITIONS", "3")
    assert partitions([]) == "3"
    assert partitions(["--partitions", "4"]) == "4"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--partitions", "0"])


@pytest.mark.parametrize("placed", ["transactions.csv", "CustomerImportance.csv"])
def test_a_data_folder_with_one_real_file_is_refused_not_overwritten(tmp_path, placed):
    data = tmp_path / "data"
    data.mkdir()
    (data / placed).write_text("the user's own file\n")
    options = LaunchOptions(data=data, output=tmp_path / "output", project=Path.cwd())
    with pytest.raises(LaunchError, match=f"holds {placed} but no "):
        run(options, io.StringIO())
    assert (data / placed).read_text() == "the user's own file\n" and len(list(data.iterdir())) == 1


def test_a_wait_for_a_process_to_start_ends_as_soon_as_the_run_is_to_stop(tmp_path):
    stop = threading.Event()
    started = Processes(tmp_path, stop)
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    with pytest.raises(Stopped):
        wait_until(lambda: False, 60, "never ready", started)
    assert time.monotonic() - began < 5


def test_ctrl_c_while_airflow_starts_stops_everything_at_once(small_banksim, tmp_path):
    """Not once Airflow is up (or the start-up wait gives up, after 240 s): exit code 130 before
    the UI's address is printed, the S3 server and Airflow stopped, their ports free again."""
    data = tmp_path / "data"
    data.mkdir()
    for source in (small_banksim.transactions, small_banksim.importance):
        (data / source.name).write_bytes(source.read_bytes())
    s3_port, ui_port = free_port(), free_port()
    options = (
        f"LaunchOptions(data=Path({str(data)!r}), output=Path({str(tmp_path / 'output')!r}), project=find_project(), "
        f"s3_port={s3_port}, ui_port={ui_port}, airflow_home=Path({str(tmp_path / 'airflow')!r}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATTERNFLOW_"))}
    launcher = subprocess.Popen(
        [sys.executable, "-c", f"import sys; from pathlib import Path; from patternflow.local.launcher import *; sys.exit(run({options}))"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in launcher.stdout:
            lines.append(line)
            if line.startswith("starting Airflow standalone"):
                break
        assert lines and lines[-1].startswith("starting Airflow standalone"), "".join(lines)
        time.sleep(1)
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=120) == 130
        rest = launcher.stdout.read()
        assert "stopping ..." in rest and "Airflow UI:" not in rest, rest
    finally:
        launcher.kill()
        launcher.communicate()
    assert port_free(s3_port) and port_free(ui_port)


class _ExpiringTokenApi(http.server.BaseHTTPRequestHandler):
    """Airflow's token and dag-runs routes, accepting only the newest token it gave out."""

    tokens_given = 0

    def do_POST(self) -> None:
        type(self).tokens_given += 1
        self._reply(200, {"access_token": f"token-{self.tokens_given}"})

    def do_GET(self) -> None:
        if self.headers["Authorization"] != f"Bearer token-{self.tokens_given}":
            self._reply(401, {"detail": "Token expired"})
        elif "dags/pattern_detection/" in self.path:
            self._reply(200, {"dag_runs": [{"dag_run_id": "manual__1"}]})
        else:
            self._reply(200, {"dag_runs": []})

    def _reply(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_failed_runs_are_still_seen_after_the_api_token_expires():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ExpiringTokenApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert _failed_runs(api, "secret", time.time()) == "pattern_detection run manual__1"
        _ExpiringTokenApi.tokens_given += 1  # the API moves on: the token the launcher holds expires
        assert _failed_runs(api, "secret", time.time()) == "pattern_detection run manual__1"
        assert _ExpiringTokenApi.tokens_given == 3  # one new token, asked for once
    finally:
        server.shutdown()
        server.server_close()
