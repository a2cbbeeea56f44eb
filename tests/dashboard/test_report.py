"""``patternflow report``: one standalone HTML file with the page's figures and plots."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from patternflow.cli import main
from patternflow.pipeline.layout import partition_state_prefix
from patternflow.pipeline.status import read_progress
from tests.dashboard.chromium import figures, number
from tests.helpers import file_rows


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    """The S3 server takes any key; boto3 wants one from somewhere (the environment, as for AWS)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


def report(stream, out, *extra: str) -> int:
    return main(["report", "--out", str(out), "--endpoint-url", stream.endpoint, "--bucket", stream.settings.bucket, *extra])


def test_the_report_of_a_finished_stream_stands_alone_and_shows_its_figures(finished, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert report(finished, out) == 0
    assert f"wrote {out}: 12 chunks" in capsys.readouterr().out
    html = out.read_text()

    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert "<script" not in html.lower()
    assert not re.search(r"\b(src|href)\s*=", html) and "url(" not in html and "@import" not in html  # nothing to fetch
    assert re.findall(r"https?://[^\s\"'<>]+", html) == ["http://www.w3.org/2000/svg"] * 2  # the SVG namespace, twice
    assert html.count("<svg") == 2 and "Lag per chunk" in html and "Detections per pattern" in html

    state = read_progress(finished.store, finished.settings)
    shown = figures(html)
    assert number(shown.figures["chunks_processed"][0]) == state.chunks_folded
    assert number(shown.figures["rows_processed"][0]) == state.rows_folded
    assert number(shown.figures["detections_total"][0]) == state.detections
    for pattern, count in state.detections_by_pattern.items():
        assert number(shown.figures[f"detections_{pattern}"][0]) == count
    prefix = finished.settings.output_prefix
    on_s3 = {key[len(prefix) :]: len(file_rows(finished.store.get(key).decode())) for key in finished.store.list(prefix)}
    assert {name: int(rows) for name, rows in shown.file_rows.items()} == on_s3


def test_an_unfinished_stream_is_reported_only_when_asked(running, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert report(running, out) == 2
    assert "is not finished (6 of 12 chunks processed)" in capsys.readouterr().err
    assert not out.exists()
    assert report(running, out, "--unfinished") == 0
    assert "(stream not finished)" in capsys.readouterr().out
    assert number(figures(out.read_text()).figures["chunks_processed"][0]) == 6


def test_a_bucket_without_a_stream_is_an_error(finished, tmp_path, capsys, s3_client, bucket):
    assert main(["report", "--out", str(tmp_path / "r.html"), "--endpoint-url", finished.endpoint, "--bucket", bucket]) == 2
    assert "no stream in" in capsys.readouterr().err


def test_the_report_of_a_partitioned_stream_shows_its_partitions(partitioned, finished, tmp_path):
    out = tmp_path / "report.html"
    assert report(partitioned, out) == 0  # the command's settings say nothing of partitions: the stream's record does
    shown = figures(out.read_text())
    assert shown.figures["partitions"] == ["3"]
    assert shown.figures["partition_last_chunk"] == ["11"] * 3
    for text, (_, task) in zip(shown.figures["partition_state_bytes"], sorted(partitioned.reports.items()), strict=True):
        size = task.state_bytes
        assert text == (f"{size / 1024:,.1f} KiB" if size < 1024**2 else f"{size / 1024**2:,.1f} MiB")
    current = [json.loads(partitioned.store.get(f"{partition_state_prefix(partitioned.settings, k)}CURRENT")) for k in range(3)]
    assert shown.figures["partition_last_run"] == [
        datetime.fromisoformat(c["committed_at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") for c in current
    ]

    one = tmp_path / "one.html"
    assert report(finished, one) == 0
    assert "data-partition" not in one.read_text() and "partitions" not in figures(one.read_text()).figures
