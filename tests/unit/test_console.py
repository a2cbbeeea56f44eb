"""What ``patternflow`` shows: rich bars and tables on a terminal, today's plain lines elsewhere."""

from __future__ import annotations

import argparse
import io
import os
import pty
import re
import select
import subprocess
import sys
from collections import Counter

import pytest
from rich.console import Console
from rich_argparse import RichHelpFormatter

from patternflow.cli import build_parser, main
from patternflow.console import ReplayProgress
from patternflow.engine.detection_engine import PATTERNS, ChunkResult
from tests.helpers import file_rows, read_files
from tests.unit.test_replay import replay_args

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COMMANDS = ("generate", "replay", "run", "reset", "s3-server", "report")


def pretend_terminal(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    """stdout and stderr taken for a colour terminal (wide enough for any path) or for none, by
    rich's own switch, whatever the environment running the tests says about colours."""
    for name in ("FORCE_COLOR", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "1" if terminal else "0")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def terminal(monkeypatch):
    pretend_terminal(monkeypatch, True)


@pytest.fixture
def not_terminal(monkeypatch):
    pretend_terminal(monkeypatch, False)


def figures(output: str) -> dict[str, str]:
    """A figures table as {name: figure}: its lines that hold a name, two spaces or more, a figure."""
    rows = (re.fullmatch(r"\s*(\S.*?)\s{2,}(\S.*?)\s*", line) for line in ANSI.sub("", output).splitlines())
    return {row[1]: row[2] for row in rows if row}


def detections_in(folder) -> Counter:
    """Detections per pattern, counted in the files themselves."""
    return Counter(row[2] for text in read_files(folder).values() for row in file_rows(text))


def test_replay_on_a_terminal_ends_with_a_table_of_what_it_wrote(small_banksim, tmp_path, capsys, terminal):
    out = tmp_path / "out"
    assert main(replay_args(small_banksim, out, "--chunk-size", "2000")) == 0
    captured = capsys.readouterr()
    table = figures(captured.out)
    written = detections_in(out)
    assert {p: int(table[p].replace(",", "")) for p in PATTERNS} == {p: written[p] for p in PATTERNS}
    assert int(table["detections"].replace(",", "")) == written.total() > 0
    assert table["chunks"] == "30" and table["rows"] == "60,000"
    assert table["detection files"] == f"{len(read_files(out))} in {out}"
    assert table["wall time"].endswith(" s")
    assert "replayed 30 chunks" not in captured.out  # the table instead of the line
    assert "\x1b[" in captured.err and "30/30" in ANSI.sub("", captured.err)  # the bar, drawn to the end


def test_replay_elsewhere_prints_todays_plain_line(small_banksim, tmp_path, capsys, not_terminal):
    out = tmp_path / "out"
    assert main(replay_args(small_banksim, out, "--chunk-size", "2000")) == 0
    captured = capsys.readouterr()
    written = detections_in(out)
    by_pattern = ", ".join(f"{p} {written[p]}" for p in PATTERNS)
    assert captured.out.startswith("replayed 30 chunks, 60,000 rows in ")
    assert captured.out.endswith(f" s: {written.total()} detections ({by_pattern}), {len(read_files(out))} files in {out}\n")
    assert captured.err == "" and "\x1b" not in captured.out


def test_replay_under_a_real_terminal_draws_with_rich(small_banksim, tmp_path):
    """A pseudo-terminal, no environment switch: rich's own tty test decides."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    env |= {"TERM": "xterm-256color", "COLUMNS": "200"}
    leader, follower = pty.openpty()
    out = tmp_path / "out"
    command = [sys.executable, "-m", "patternflow.cli", *replay_args(small_banksim, out, "--chunk-size", "2000")]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    screen = _read_until_closed(leader)
    assert process.wait(timeout=60) == 0
    assert "\x1b[" in screen and "30/30" in ANSI.sub("", screen)
    assert figures(screen)["detections"] == f"{detections_in(out).total():,}"


def _read_until_closed(fd: int, seconds: float = 60) -> str:
    """Everything written to a pseudo-terminal until its last writer closes it."""
    data = b""
    try:
        while select.select([fd], [], [], seconds)[0]:
            block = os.read(fd, 65536)
            if not block:
                break
            data += block
    except OSError:  # EIO: the other end is closed
        pass
    finally:
        os.close(fd)
    return data.decode()


def test_a_resumed_replay_counts_its_own_chunks_from_where_it_resumed():
    """Chunks folded before the resume are done, not this run's work: the bar starts there."""
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    with ReplayProgress(console) as progress:
        for index in range(6, 10):
            progress.update(ChunkResult(index, 1_000, {"PatId1": 1, "PatId2": 2, "PatId3": 0}, [], 0.01), 10)
        task = progress._progress.tasks[0]
    assert (task.completed, task.total) == (10, 10)
    assert task.fields == {"rows": 3_000, "detections": 12}  # chunk 6 is the baseline of the rate
    assert "10/10 chunks" in ANSI.sub("", console.file.getvalue())


def test_help_goes_through_rich_argparse_for_every_command(capsys, not_terminal):
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subcommands) == set(COMMANDS)
    assert parser.formatter_class is RichHelpFormatter
    assert all(sub.formatter_class is RichHelpFormatter for sub in subcommands.values())
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("Usage: patternflow")  # rich_argparse's capital; argparse writes "usage:"
    assert all(name in text for name in COMMANDS) and "\x1b" not in text


def test_help_on_a_terminal_is_coloured(capsys, terminal):
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    text = capsys.readouterr().out
    assert "\x1b[" in text and "--commit-every" in ANSI.sub("", text)


def test_force_color_alone_does_not_turn_a_log_into_a_terminal(small_banksim, tmp_path, capsys, monkeypatch):
    """CI jobs set FORCE_COLOR for coloured logs: a replay's log still gets its plain line."""
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert main(replay_args(small_banksim, tmp_path / "out", "--chunk-size", "20000")) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("replayed 3 chunks, 60,000 rows in ") and "\x1b" not in captured.out
    assert captured.err == ""
