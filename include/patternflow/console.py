"""What the commands show on a terminal: rich progress bars and summary tables.

On a terminal the commands draw with rich; anywhere else they print the plain lines CI logs and
scripts read, unchanged. The progress bars are redrawn by rich's own thread a few times a second, so
what a replay pays is one ``update`` call per chunk.

A leaf like ``errors``: it imports rich and nothing of the stages, so the commands on top and the
launcher may use it; the engine and ingest never do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import IO, TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from patternflow.engine.detection_engine import ChunkResult


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal: a tty, unless ``TTY_COMPATIBLE`` (rich's switch) says
    otherwise with 1 or 0.

    ``FORCE_COLOR``, which rich also takes for "a terminal", does not switch the layout: CI jobs
    set it for coloured logs, and a log must still get lines, not a bar redrawn in place."""
    switch = os.environ.get("TTY_COMPATIBLE")
    if switch in ("0", "1"):
        return switch == "1"
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def console_for(stream: IO[str]) -> Console:
    """A console writing to ``stream``, a terminal's only if ``is_terminal`` says so. No
    highlighting or markup: paths and numbers are printed as they are, brackets and all."""
    return Console(file=stream, force_terminal=is_terminal(stream), highlight=False, markup=False)


def figures_table(title: str, figures: Iterable[tuple[str, str]]) -> Table:
    """Two columns, a name and its figure (right-aligned, so that numbers line up)."""
    table = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in figures:
        table.add_row(name, value)
    return table


def detection_figures(by_pattern: Mapping[str, int]) -> list[tuple[str, str]]:
    """A row per pattern, then their total."""
    rows = [(pattern, f"{n:,}") for pattern, n in by_pattern.items()]
    return [*rows, ("detections", f"{sum(by_pattern.values()):,}")]


class _RowsPerSecond(ProgressColumn):
    """Rows folded a second since the bar started: rich's own speed column would count chunks."""

    def render(self, task: Task) -> Text:
        rows, elapsed = task.fields.get("rows", 0), task.elapsed
        figure = f"{rows / elapsed:,.0f}" if rows and elapsed else "-"
        return Text(f"{figure} rows/s", style="progress.data.speed")


class ReplayProgress:
    """``patternflow replay``'s bar: chunks done of the total, rows a second, time left and the
    detections so far. ``update`` is replay's ``on_chunk`` callback; use it inside ``with``."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            _RowsPerSecond(),
            TextColumn("{task.fields[detections]:,} detections"),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=5,
        )
        self._task: TaskID = self._progress.add_task("replay", total=None, rows=0, detections=0)
        self._rows = 0
        self._detections = 0
        self._first = True

    def __enter__(self) -> ReplayProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._progress.stop()

    def update(self, result: ChunkResult, total: int) -> None:
        """Count one folded chunk (its index and ``total`` being the stream's)."""
        self._rows += result.rows
        self._detections += sum(result.new_detections.values())
        done = result.index + 1
        if self._first and result.index:
            # A resumed replay: the chunks folded before it are not its work, and counting them
            # as done just now would make the rate and the time left absurd. The rate starts here.
            self._progress.reset(self._task, total=total, completed=done, rows=0, detections=self._detections)
            self._rows = 0
        self._first = False
        self._progress.update(self._task, total=total, completed=done, rows=self._rows, detections=self._detections)
        if done == total:
            self._progress.stop_task(self._task)  # the rate is the folds', not the final commit's too
