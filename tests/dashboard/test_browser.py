"""The page in a real browser, served by a real ``airflow api-server``, over a stream the real DAGs
finished (``airflow dags test`` against the S3 server on 127.0.0.1).

Chromium (Debian's package, headless) loads the page, its script fetches the view through the
plugin's API, and the numbers it shows are compared with the state on S3. A screenshot of the
page inside the Airflow UI is saved under the test's output folder (and to
``$PATTERNFLOW_SCREENSHOTS`` when set, which is how the README's picture is made).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from patternflow.local.launcher import stop_group
from patternflow.pipeline.s3 import S3Store, endpoint_client
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.status import read_chunk_metrics, read_progress
from patternflow.web.dashboard import create_app
from patternflow.web.stream_view import LATEST_ROWS
from tests.airflow_runs import AIRFLOW, PROJECT, airflow, airflow_environment
from tests.dashboard.chromium import dump_dom, figures, find_chromium, number, screenshot
from tests.helpers import file_rows, free_port

CHUNK = 5_000

pytestmark = pytest.mark.slow


def wait_for(url: str, seconds: float, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the api-server exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s: {log.read_text()[-3000:]}")


def start_api_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [AIRFLOW, "api-server"],
            env=env | {"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__WORKERS": "1"},
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass(frozen=True)
class Served:
    browser: str
    api: str
    """An api-server where every visitor is an admin, as in a test UI: the browser needs no login."""
    guarded_api: str
    """An api-server with a login: user ``admin``, password ``password``."""
    password: str
    store: S3Store
    settings: PipelineSettings


@pytest.fixture(scope="module")
def served(tmp_path_factory, s3_endpoint, small_banksim) -> Iterator[Served]:
    """A stream the DAGs finished, and two api-servers on it (started together)."""
    browser = find_chromium()
    home = tmp_path_factory.mktemp("airflow-ui")
    bucket = f"pf-{uuid.uuid4().hex[:20]}"
    client = endpoint_client(s3_endpoint, access_key="test", secret_key="test")
    client.create_bucket(Bucket=bucket)
    env = airflow_environment(home, s3_endpoint, bucket, small_banksim, CHUNK, {"max_chunks_per_run": 100}) | {
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
    }
    airflow(env, "db", "migrate")
    airflow(env, "dags", "test", "transaction_producer")
    airflow(env, "dags", "test", "pattern_detection")
    store, settings = S3Store(client, bucket), PipelineSettings(bucket=bucket)
    assert read_progress(store, settings).finished

    password = secrets.token_urlsafe(12)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": password}))
    ports = free_port(), free_port()
    kinds = {
        "open": {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"},
        "guarded": {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)},
    }
    logs = [home / f"api-server-{kind}.log" for kind in kinds]
    servers = [start_api_server(env | extra, port, log) for extra, port, log in zip(kinds.values(), ports, logs, strict=True)]
    try:
        apis = [f"http://127.0.0.1:{port}" for port in ports]
        for api, server, log in zip(apis, servers, logs, strict=True):
            wait_for(f"{api}/api/v2/monitor/health", 120, server, log)
        yield Served(browser, apis[0], apis[1], password, store, settings)
    finally:
        for server in servers:
            stop_group(server)


def test_the_page_shows_the_numbers_in_the_state(served):
    browser, api, store, settings = served.browser, served.api, served.store, served.settings
    started = time.perf_counter()
    shown = figures(dump_dom(browser, f"{api}/patternflow/"))
    print(f"page loaded and rendered in {time.perf_counter() - started:.2f} s (Chromium start included)")
    state = read_progress(store, settings, count_uploads=True)
    metrics = read_chunk_metrics(store, settings)

    assert shown.figures["status"] == ["finished"]
    assert number(shown.figures["chunks_uploaded"][0]) == state.chunks_uploaded == state.chunks_total
    assert number(shown.figures["chunks_processed"][0]) == state.chunks_folded == 12
    assert number(shown.figures["rows_processed"][0]) == state.rows_folded
    assert shown.figures["end_of_stream_marker"] == ["reached"]
    assert number(shown.figures["detections_total"][0]) == state.detections > 0
    for pattern, count in state.detections_by_pattern.items():
        assert number(shown.figures[f"detections_{pattern}"][0]) == count
    on_s3 = {key[len(settings.output_prefix) :]: len(file_rows(store.get(key).decode())) for key in store.list(settings.output_prefix)}
    assert {name: int(rows) for name, rows in shown.file_rows.items()} == on_s3
    lags = [m["committed_at"] - m["uploaded_at"] for m in metrics]
    assert [number(text) for text in shown.figures["chunk_lag"]] == [round(lag, 2) for lag in reversed(lags)]
    assert number(shown.figures["lag_max"][0]) == round(max(lags), 2)
    keys = sorted(store.list(settings.output_prefix), key=lambda key: int(key.rsplit("_", 1)[1][:-4]))
    newest = [row for key in keys for row in file_rows(store.get(key).decode())][::-1][:LATEST_ROWS]
    assert shown.latest == [[*row, file] for row, file in zip(newest, newest_files(store, settings, keys), strict=True)]


def get(url: str, **headers: str) -> int:
    """The status of a GET."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_data_routes_answer_only_to_a_signed_in_user(served):
    api = served.guarded_api
    body = json.dumps({"username": "admin", "password": served.password}).encode()
    request = urllib.request.Request(f"{api}/auth/token", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.load(response)["access_token"]
    for route in ("/patternflow/api/stream", "/patternflow/api/stream/html"):
        assert get(api + route) == 401
        assert get(api + route, Authorization=f"Bearer {token}") == 200  # a script, with a token
        assert get(api + route, Cookie=f"_token={token}") == 200  # the UI's session, as the framed page sends it
        assert get(api + route, Authorization=f"Bearer {token[:-4]}AAAA") == 403  # a forged token
    assert get(f"{api}/patternflow/") == 200  # the page holds no data


def newest_files(store: S3Store, settings: PipelineSettings, keys: list[str]) -> list[str]:
    """The file of each of the newest rows, newest first."""
    names = [key[len(settings.output_prefix) :] for key in keys for _ in file_rows(store.get(key).decode())]
    return names[::-1][:LATEST_ROWS]


def test_the_json_api_answers_through_airflows_authorisation(served):
    api, store, settings = served.api, served.store, served.settings
    with urllib.request.urlopen(f"{api}/patternflow/api/stream", timeout=30) as response:
        body = json.load(response)
    assert body["progress"]["chunks_processed"] == read_progress(store, settings).chunks_folded
    with urllib.request.urlopen(f"{api}/api/v2/plugins", timeout=30) as response:
        plugins = json.load(response)["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "patternflow"]
    assert ours["external_views"][0]["url_route"] == "pattern-detections"


def test_the_page_sits_in_the_airflow_uis_navigation(served, tmp_path):
    browser, api = served.browser, served.api
    url = f"{api}/plugin/pattern-detections"
    dom = dump_dom(browser, url)
    assert 'href="/plugin/pattern-detections"' in dom or "plugin/pattern-detections" in dom  # the nav entry
    assert "<iframe" in dom and 'src="patternflow/' in dom.replace(api + "/", "")  # the page, framed by the UI
    shot = screenshot(browser, url, tmp_path / "dashboard.png")
    dark_system = ("--force-dark-mode", "--blink-settings=preferredColorScheme=0")  # the UI follows the system by default
    dark = screenshot(browser, url, tmp_path / "dashboard-dark.png", (1440, 1000), *dark_system)
    print(f"screenshots: {shot} {dark}")
    if os.environ.get("PATTERNFLOW_SCREENSHOTS"):
        folder = Path(os.environ["PATTERNFLOW_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        for path in (shot, dark):
            shutil.copy(path, folder / path.name)


@contextmanager
def app_server(store: S3Store, settings: PipelineSettings) -> Iterator[str]:
    """The page's app alone, under uvicorn in a thread (as the api-server mounts it, without
    Airflow's login): a browser over any stream, no DAG run needed."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: (store, settings)), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the app's server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_the_page_shows_each_partition_of_a_partitioned_stream(partitions_apart):
    browser = find_chromium()
    with app_server(partitions_apart.store, partitions_apart.settings) as url:
        shown = figures(dump_dom(browser, f"{url}/"))
    assert shown.figures["partitions"] == ["3"]
    assert shown.figures["partition_last_chunk"] == ["5", "2", "\u2013"]
    assert [text.split()[-1] for text in shown.figures["partition_state_bytes"][:2]] == ["KiB", "KiB"]
    assert shown.figures["partition_last_run"][2] == "not started"
    assert number(shown.figures["chunks_processed"][0]) == 0  # no chunk is in every partition yet
