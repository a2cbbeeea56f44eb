"""The plugin's app and JSON API, through FastAPI's test client, over a stream on the S3 server."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

from fastapi.testclient import TestClient

from patternflow.pipeline.s3 import S3Store
from patternflow.web.dashboard import create_app
from patternflow.web.stream_view import build_view
from tests.airflow_runs import PROJECT

DOCUMENTED_FIELDS = {"bucket", "generated_at", "progress", "detections", "lag_seconds", "chunks", "files", "latest_detections"}


def client_for(stream, **kwargs) -> TestClient:
    return TestClient(create_app(lambda: (stream.store, stream.settings), **kwargs))


def test_the_json_api_serves_the_stream_view(finished):
    response = client_for(finished).get("/api/stream")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == DOCUMENTED_FIELDS
    expected = build_view(finished.store, finished.settings)
    assert {k: v for k, v in body.items() if k != "generated_at"} == {k: v for k, v in expected.items() if k != "generated_at"}
    assert body["progress"]["finished"] and body["progress"]["chunks_processed"] == 12
    assert set(body["chunks"][0]) == {
        "index",
        "rows",
        "rows_quarantined",
        "uploaded_at",
        "started_at",
        "finished_at",
        "committed_at",
        "processing_seconds",
        "lag_seconds",
        "new_detections",
        "files",
    }


def test_the_json_api_of_a_partitioned_stream_adds_its_partitions(partitioned, partitions_apart):
    for stream in (partitioned, partitions_apart):
        body = client_for(stream).get("/api/stream").json()
        assert set(body) == DOCUMENTED_FIELDS | {"partitions"}
        assert body["partitions"] == build_view(stream.store, stream.settings)["partitions"]
        assert [p["partition"] for p in body["partitions"]] == [0, 1, 2]
        assert set(body["partitions"][0]) == {
            "partition",
            "started",
            "chunks_processed",
            "last_chunk",
            "state_version",
            "state_bytes",
            "committed_at",
        }
    assert [p["chunks_processed"] for p in body["partitions"]] == [6, 3, 0]  # partitions_apart's
    html = client_for(partitioned).get("/api/stream/html").text
    assert html.count("<tr data-partition=") == 3 and 'data-figure="partitions" data-value="3"' in html


def test_the_html_route_tells_the_page_whether_to_keep_refreshing(finished, running):
    done = client_for(finished).get("/api/stream/html")
    assert done.status_code == 200 and done.headers["x-stream-finished"] == "true"
    assert 'data-figure="chunks_processed" data-value="12"' in done.text
    busy = client_for(running).get("/api/stream/html")
    assert busy.headers["x-stream-finished"] == "false"
    assert 'data-figure="chunks_processed" data-value="6"' in busy.text


def test_the_page_is_one_document_that_loads_its_data_by_relative_urls(finished):
    page = client_for(finished).get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/*STYLE*/" not in page.text and "/*SCRIPT*/" not in page.text and "__REFRESH_MS__" not in page.text
    assert re.findall(r'fetch\("([^"]+)"', page.text) == ["api/stream/html"]  # relative: works under any base URL
    assert "<link" not in page.text and "<script src" not in page.text


def test_without_credentials_airflow_refuses_the_data_but_not_the_empty_page(finished):
    from airflow.api_fastapi.core_api.security import requires_access_dag

    client = client_for(finished, authorize=requires_access_dag(method="GET", param_dag_id="pattern_detection"))
    assert client.get("/api/stream").status_code == 401
    assert client.get("/api/stream/html").status_code == 401
    assert client.get("/").status_code == 200


def test_an_unreadable_stream_is_a_503_with_the_reason(finished):
    missing = S3Store(finished.store.client, "pf-no-such-bucket")
    client = TestClient(create_app(lambda: (missing, finished.settings)))
    response = client.get("/api/stream")
    assert response.status_code == 503 and "NoSuchBucket" in response.json()["detail"]


def load_plugin():
    spec = importlib.util.spec_from_file_location("patternflow_dashboard_plugin", PROJECT / "plugins" / "patternflow_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plugin_mounts_the_app_and_adds_the_page_to_the_navigation():
    plugin = load_plugin().PatternflowDashboard
    (app,) = plugin.fastapi_apps
    (view,) = plugin.external_views
    assert app["url_prefix"] == "/patternflow"
    assert view["destination"] == "nav" and view["url_route"] == "pattern-detections"
    assert view["href"] == "patternflow/"  # relative to the UI's base URL, so it works behind a proxy path
    client = TestClient(app["app"])
    assert client.get("/").status_code == 200
    assert client.get("/icon.svg").headers["content-type"] == "image/svg+xml"
    assert client.get("/api/stream").status_code == 401  # Airflow's own check, before anything is read


def test_loading_the_plugin_loads_neither_fastapi_nor_airflows_api():
    """Every task process loads the plugins: the app is built on the api-server's first request instead."""
    code = "import sys, patternflow_dashboard; print(sorted(m for m in sys.modules if m.startswith(('fastapi', 'airflow.api_fastapi'))))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
