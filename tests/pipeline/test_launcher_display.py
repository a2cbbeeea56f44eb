"""``patternflow run``'s live view and summary: rich on a terminal, today's plain lines elsewhere."""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from pathlib import Path

import pytest

from patternflow.local.launcher import LaunchOptions, Processes, _display, _LiveDisplay, _PlainDisplay, _summary, _watch
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.sources import source_opener
from patternflow.pipeline.status import StreamProgress
from tests.helpers import file_rows, free_port
from tests.pipeline.test_detector import run_until_finished, settings_for
from tests.unit.test_console import ANSI, figures, pretend_terminal

FOUND = {"PatId1": 3, "PatId2": 40, "PatId3": 1}
DONE = StreamProgress(
    started=True,
    chunks_total=12,
    rows_total=60_000,
    chunks_uploaded=12,
    chunks_folded=12,
    rows_folded=60_000,
    detections_by_pattern=FOUND,
    files_written=1,
    finished=True,
)
METRICS = [{"index": i, "uploaded_at": 0.0, "finished_at": 0.9, "committed_at": 1 + i / 10} for i in range(12)]  # lags 1.0 to 2.1 s


@pytest.fixture
def finished_stream(small_banksim, s3_client, bucket):
    """A whole stream on S3, produced and detected as the DAGs do, without Airflow."""
    settings = settings_for(bucket, small_banksim)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    run_until_finished(store, settings)
    return store, settings


def watch(stream: tuple, output: Path) -> tuple[int, str]:
    """``_watch`` as ``make run --exit-when-done`` calls it, once the stream is complete (no
    Airflow: nothing listens where its API would be, so no run is seen failing)."""
    store, settings = stream
    options = LaunchOptions(data=output, output=output, project=Path.cwd(), exit_when_done=True)
    out = io.StringIO()
    api = f"http://127.0.0.1:{free_port()}"
    code = _watch(options, settings, store, api, "password", threading.Event(), Processes(output), out)
    return code, out.getvalue()


def detections_in(folder: Path) -> Counter:
    return Counter(row[2] for path in folder.glob("detection_*.csv") for row in file_rows(path.read_text()))


def test_make_run_on_a_terminal_ends_with_a_table_of_the_exported_files(finished_stream, tmp_path, monkeypatch):
    pretend_terminal(monkeypatch, True)
    code, text = watch(finished_stream, tmp_path)
    assert code == 0
    table = figures(text.split("stream complete")[-1])
    exported = detections_in(tmp_path)
    assert {p: int(table[p].replace(",", "")) for p in FOUND} == {p: exported[p] for p in FOUND}
    assert int(table["detections"].replace(",", "")) == exported.total() > 0
    assert table["chunks"] == "12" and table["rows"] == "60,000"
    assert table["detection files"] == f"{len(list(tmp_path.glob('detection_*.csv')))} copied to {tmp_path}/"
    assert re.fullmatch(r"median [\d.]+ s, p95 [\d.]+ s, max [\d.]+ s", table["lag, upload to commit"])
    assert "12/12 chunks" in ANSI.sub("", text)  # the live bars' last frame, left above the table
    assert "\x1b[?25h" in text  # the cursor the live display hid is shown again


def test_make_run_elsewhere_prints_todays_lines(finished_stream, tmp_path, monkeypatch):
    pretend_terminal(monkeypatch, False)
    code, text = watch(finished_stream, tmp_path)
    exported = detections_in(tmp_path)
    by_pattern = ", ".join(f"{p} {exported[p]}" for p in FOUND)
    progress, complete, lag = text.splitlines()
    assert code == 0 and "\x1b" not in text
    assert progress.startswith("chunks uploaded 12/12  processed 12/12  detections PatId1=")
    assert complete == (
        f"stream complete: 12 chunks, 60,000 rows, {exported.total()} detections ({by_pattern}), "
        f"{len(list(tmp_path.glob('detection_*.csv')))} files copied to {tmp_path}/"
    )
    assert re.fullmatch(r"lag from upload to commit: median [\d.]+ s, p95 [\d.]+ s, max [\d.]+ s", lag)


def test_the_plain_summary_is_todays(monkeypatch):
    pretend_terminal(monkeypatch, False)
    out = io.StringIO()
    _summary(DONE, METRICS, [Path("detection_0.csv")], Path("output"), out)
    assert out.getvalue() == (
        "stream complete: 12 chunks, 60,000 rows, 44 detections (PatId1 3, PatId2 40, PatId3 1), 1 files copied to output/\n"
        "lag from upload to commit: median 1.55 s, p95 2.00 s, max 2.10 s\n"
    )


def test_the_plain_display_prints_todays_lines(monkeypatch):
    pretend_terminal(monkeypatch, False)
    out = io.StringIO()
    display = _display(out)
    assert isinstance(display, _PlainDisplay)
    display.show(StreamProgress(), [])
    display.show(DONE, METRICS)
    display.close()
    assert out.getvalue() == (
        "waiting for the producer to start the stream ...\n"
        "chunks uploaded 12/12  processed 12/12  detections PatId1=3 PatId2=40 PatId3=1  files 1  lag 2.1 s\n"
    )


def test_the_live_display_draws_bars_and_can_start_again_after_a_close(monkeypatch):
    """It closes before any other line is printed (a failed run), then goes on drawing."""
    pretend_terminal(monkeypatch, True)
    out = io.StringIO()
    display = _display(out)
    assert isinstance(display, _LiveDisplay)
    display.show(StreamProgress(), [])
    display.close()
    halfway = StreamProgress(started=True, chunks_total=12, chunks_uploaded=7, chunks_folded=5, detections_by_pattern=FOUND)
    display.show(halfway, METRICS[:5])
    display.show(DONE, METRICS)
    display.close()
    display.close()
    screen = ANSI.sub("", out.getvalue())
    assert "waiting for the producer to start the stream ..." in screen
    assert re.search(r"uploaded\s.*\s12/12 chunks", screen) and re.search(r"committed\s.*\s12/12 chunks", screen)
    assert "detections  PatId1 3  PatId2 40  PatId3 1  files 1  lag 2.1 s" in screen
    assert out.getvalue().count("\x1b[?25l") == out.getvalue().count("\x1b[?25h") == 2  # cursor hidden, then shown, twice
