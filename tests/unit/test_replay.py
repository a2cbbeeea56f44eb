"""``patternflow replay``: the whole stream from files, resumable, with clear errors."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from patternflow.cli import main
from patternflow.engine.config import DetectionConfig
from patternflow.ingest.parsing import read_importance, read_transactions
from tests.helpers import file_rows, read_files, run_stream


def without_times(files: dict[str, str]) -> dict[str, list[list[str]]]:
    return {name: [row[2:] for row in file_rows(text)] for name, text in files.items()}


def replay_args(banksim, out, *extra: str) -> list[str]:
    return [
        "replay",
        "--transactions",
        str(banksim.transactions),
        "--importance",
        str(banksim.importance),
        "--out",
        str(out),
        *extra,
    ]


def test_replay_writes_what_the_engine_writes(small_banksim, tmp_path, capsys):
    assert main(replay_args(small_banksim, tmp_path / "out", "--chunk-size", "2000")) == 0
    summary = capsys.readouterr().out
    assert "replayed 30 chunks, 60,000 rows" in summary
    engine_files = run_stream(
        read_transactions(small_banksim.transactions),
        read_importance(small_banksim.importance),
        DetectionConfig(chunk_size=2_000),
        tmp_path / "engine",
    )
    replayed = read_files(tmp_path / "out")
    assert without_times(replayed) == without_times(engine_files)
    first = file_rows(replayed["detection_0.csv"])[0]
    assert first[0].endswith("+05:30") and first[1].endswith("+05:30") and first[0] <= first[1]


def test_bad_input_names_file_line_and_field(small_banksim, tmp_path, capsys):
    lines = small_banksim.transactions.read_text().splitlines(keepends=True)
    lines[12_344] = lines[12_344].replace(",0\n", ",zero\n") if lines[12_344].endswith(",0\n") else lines[12_344][:-3] + "x,0\n"
    bad = tmp_path / "transactions.csv"
    bad.write_text("".join(lines))
    args = replay_args(small_banksim, tmp_path / "out")
    args[2] = str(bad)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{bad}, line 12345, field '" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "line 1: the file is empty"), ("step;customer;amount\n", "line 1, field 'step': ")],
    ids=["empty", "wrong header, no rows"],
)
def test_a_file_with_no_rows_still_has_its_header_checked(small_banksim, tmp_path, capsys, text, expected):
    bad = tmp_path / "transactions.csv"
    bad.write_text(text)
    args = replay_args(small_banksim, tmp_path / "out")
    args[2] = str(bad)
    assert main(args) == 2
    assert f"{bad}, {expected}" in capsys.readouterr().err


def test_a_blank_line_where_a_chunk_ends_is_a_blank_line_between_rows(small_banksim, tmp_path, capsys):
    lines = small_banksim.transactions.read_text().splitlines(keepends=True)
    lines[2_000] = "\n"  # line 2,001 of the file: the last of chunk 0 (lines 2..2,001)
    bad = tmp_path / "transactions.csv"
    bad.write_text("".join(lines))
    args = replay_args(small_banksim, tmp_path / "out", "--chunk-size", "2000")
    args[2] = str(bad)
    assert main(args) == 2
    assert f"{bad}, line 2001: blank line between rows" in capsys.readouterr().err


def test_missing_file_is_a_clear_error(small_banksim, tmp_path, capsys):
    args = replay_args(small_banksim, tmp_path / "out")
    args[4] = str(tmp_path / "nope.csv")
    assert main(args) == 2
    assert "nope.csv" in capsys.readouterr().err


@pytest.mark.slow
def test_replay_killed_with_sigkill_resumes_to_identical_files(small_banksim, tmp_path):
    args = replay_args(small_banksim, tmp_path / "out", "--chunk-size", "500", "--state", str(tmp_path / "state"), "--commit-every", "0")
    command = [sys.executable, "-m", "patternflow.cli", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    current = tmp_path / "state" / "CURRENT"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if current.exists() and json.loads(current.read_text())["chunks_folded"] >= 20:
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = json.loads(current.read_text())["chunks_folded"]
    assert 20 <= killed_at < 120

    resumed = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "resumed at chunk" in resumed.stdout
    clean = subprocess.run(
        [sys.executable, "-m", "patternflow.cli", *replay_args(small_banksim, tmp_path / "clean", "--chunk-size", "500")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "replayed 120 chunks" in clean.stdout
    assert without_times(read_files(tmp_path / "out")) == without_times(read_files(tmp_path / "clean"))
    assert json.loads(current.read_text())["finished"] is True


def test_a_new_replay_into_a_used_folder_leaves_no_file_of_the_earlier_one(small_banksim, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(replay_args(small_banksim, out, "--chunk-size", "2000")) == 0
    first = read_files(out)
    (out / "detection_999.csv").write_text("from an earlier, longer replay\n")
    (out / "notes.txt").write_text("the user's own\n")
    assert main(replay_args(small_banksim, out, "--chunk-size", "2000")) == 0
    assert set(read_files(out)) == set(first) and (out / "notes.txt").exists()


def test_replay_takes_the_chunk_size_from_the_command_line_then_the_environment(small_banksim, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATTERNFLOW_CHUNK_SIZE", "7000")
    assert main(replay_args(small_banksim, tmp_path / "environment")) == 0
    assert "replayed 9 chunks" in capsys.readouterr().out  # 60,000 rows
    assert main(replay_args(small_banksim, tmp_path / "command", "--chunk-size", "20000")) == 0
    assert "replayed 3 chunks" in capsys.readouterr().out
    monkeypatch.delenv("PATTERNFLOW_CHUNK_SIZE")
    assert main(replay_args(small_banksim, tmp_path / "default")) == 0
    assert "replayed 6 chunks" in capsys.readouterr().out


def test_replay_reads_the_thresholds_as_the_pipeline_does(small_banksim, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATTERNFLOW_CHILD_MIN_TRANSACTIONS", "1")
    monkeypatch.setenv("PATTERNFLOW_CHILD_MAX_AVERAGE_AMOUNT", "1000000")
    assert main(replay_args(small_banksim, tmp_path / "many", "--chunk-size", "20000")) == 0
    monkeypatch.delenv("PATTERNFLOW_CHILD_MIN_TRANSACTIONS")
    monkeypatch.delenv("PATTERNFLOW_CHILD_MAX_AVERAGE_AMOUNT")
    assert main(replay_args(small_banksim, tmp_path / "default", "--chunk-size", "20000")) == 0
    assert len(read_files(tmp_path / "many")) > 10 * len(read_files(tmp_path / "default"))


def test_replay_files_get_the_mode_of_any_new_file(small_banksim, tmp_path, capsys):
    """Written to a private temporary file and renamed, they still end up as ``open`` makes files."""
    umask = os.umask(0o022)
    try:
        assert main(replay_args(small_banksim, tmp_path / "out", "--chunk-size", "2000")) == 0
    finally:
        os.umask(umask)
    files = sorted((tmp_path / "out").glob("detection_*.csv"))
    assert files and {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o644}
