"""Load benchmark (``make bench-load``): the producer at 10 chunks a second (tick 0.1 s) through the
real pipeline (``patternflow run``: S3 server on 127.0.0.1, Airflow standalone, both DAGs) on
full-size generated BankSim, or ``--scale N`` times it. Prints the upload-to-commit lag
distribution, the largest backlog and the peak memory (RSS) of the detection task, and checks the
detection files against ``patternflow replay``'s for the same data (exit 1 if they differ); then
each figure beside its target (PASS or MISS) and beside the same figure of a baseline run at
``--baseline-scale`` (full size by default) and the same tick, made first in the same invocation:
the machine's speed may swing between minutes, so a lag is quoted as a ratio to it.

The peak RSS is each task process's own high-water mark (``VmHWM``), read every 0.2 s from the
run's task processes (process title ``airflow worker -- <task instance id>``) that have DuckDB
loaded: only ``detect_patterns`` runs the engine (the DAG files and the sensor never import it).
A detection run takes every waiting chunk up to ``max_rows_per_run`` rows, so one task may fold
a hundred chunks; the high-water mark still holds its peak however short-lived it was, as long
as one sample sees the process. The smallest task's peak is printed too: the floor a detection
task costs whatever it folds.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from patternflow.ingest import banksim
from patternflow.ingest.generate import generate
from patternflow.replay import replay
from tests.benchmarks.bench_e2e import PROJECT, backlog_peak, largest_backlog, largest_burst, percentile, report
from tests.helpers import free_port

LAG_P95_TARGET = 10.0
BACKLOG_TARGET = 40
RSS_TARGET_MIB = 500


class PeakRss:
    """Samples every task process under ``root`` that runs the engine; keeps each one's peak RSS."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.peaks: dict[int, int] = {}
        """Task process id -> its peak RSS in bytes (its ``VmHWM`` when last seen)."""
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak(self) -> int:
        return max(self.peaks.values(), default=0)

    @property
    def floor(self) -> int:
        """The smallest task's peak: what a detection task costs however little it folds."""
        return min(self.peaks.values(), default=0)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                children = psutil.Process(self.root).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for child in children:
                try:
                    title = " ".join(child.cmdline())
                    if title.startswith("airflow worker -- ") and not title.endswith("<idle>") and _runs_duckdb(child.pid):
                        self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), _high_water_mark(child.pid))
                        self.samples += 1
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                    continue


def _runs_duckdb(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "duckdb" in maps.read()


def _high_water_mark(pid: int) -> int:
    """The process's peak RSS so far (``VmHWM``, bytes): unlike its RSS at the moment of a
    sample, it misses no peak that came and went between samples."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmHWM in /proc/{pid}/status")


@dataclass
class LoadRun:
    """One ``patternflow run`` at a scale and tick: its chunks' metrics and what was measured."""

    scale: float
    rows: int
    seconds: float
    metrics: list[dict]
    memory: PeakRss
    differences: list[str] = field(default_factory=list)

    @property
    def lag_p95(self) -> float:
        return percentile([m["committed_at"] - m["uploaded_at"] for m in self.metrics], 0.95)

    @property
    def lag_median(self) -> float:
        return percentile([m["committed_at"] - m["uploaded_at"] for m in self.metrics], 0.5)

    @property
    def backlog(self) -> int:
        """Most chunks uploaded but not yet committed at any one time."""
        return largest_backlog(self.metrics)

    @property
    def steady_backlog(self) -> int:
        """The same from the first commit on: without what piles up while Airflow starts the
        first detection task."""
        return backlog_peak(self.metrics, after=min(m["committed_at"] for m in self.metrics))[0]


def run_load(scale: float, tick: float, timeout: float, work: Path) -> LoadRun:
    """Generate ``scale`` times BankSim, stream it through ``patternflow run`` and compare its
    detection files with ``patternflow replay``'s; prints the run's own report on the way."""
    rows = round(banksim.ROWS * scale)
    print(f"generating {rows:,} transactions ...", flush=True)
    generate(work / "data", seed=0, rows=rows)
    command = [sys.executable, "-c", launch_script(work, tick, timeout)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=PROJECT)
    with PeakRss(process.pid) as memory:
        code = process.wait()
    if code:
        sys.exit(f"patternflow run exited with code {code}")
    run = LoadRun(scale, rows, time.monotonic() - started, json.loads((work / "metrics.json").read_text()), memory)
    print(f"\n{rows:,} rows at tick {tick} s: {run.seconds:.0f} s including Airflow's start")
    report(run.metrics)
    if memory.samples:
        print(
            f"  peak RSS of a detect_patterns task process: {memory.peak / 2**20:.0f} MiB; the smallest task's peak "
            f"{memory.floor / 2**20:.0f} MiB ({len(memory.peaks)} task processes, {memory.samples} samples)"
        )
    else:
        print("  peak RSS of the detection task: no task process running the engine was seen by the sampler")
    run.differences = compare_with_replay(work / "data", work / "out", work / "replay")
    if run.differences:
        print("  detection files differ from patternflow replay's:\n    " + "\n    ".join(run.differences))
    return run


@dataclass(frozen=True)
class Figure:
    """A figure of a run, how it is printed, and its target (None: printed for comparison only)."""

    name: str
    of: Callable[[LoadRun], float]
    form: str
    target: str = ""
    meets: Callable[[float], bool] | None = None


FIGURES = (
    Figure("upload -> commit lag p95", lambda r: r.lag_p95, "{:.2f} s", f"<= {LAG_P95_TARGET:.0f} s", lambda v: v <= LAG_P95_TARGET),
    Figure(
        "largest backlog (not yet committed)", lambda r: r.backlog, "{:.0f}", f"<= {BACKLOG_TARGET} chunks", lambda v: v <= BACKLOG_TARGET
    ),
    Figure(
        "detection task peak RSS",
        lambda r: r.memory.peak / 2**20,
        "{:.0f} MiB",
        f"<= {RSS_TARGET_MIB} MiB",
        lambda v: 0 < v <= RSS_TARGET_MIB,
    ),
    Figure("  the same after the first commit", lambda r: r.steady_backlog, "{:.0f}"),
    Figure("  largest upload burst (within 1 s)", lambda r: largest_burst(r.metrics), "{:.0f}"),
    Figure("detection task RSS floor (smallest peak)", lambda r: r.memory.floor / 2**20, "{:.0f} MiB"),
    Figure("upload -> commit lag median", lambda r: r.lag_median, "{:.2f} s"),
)


def launch_script(work: Path, tick: float, timeout: float) -> str:
    """``patternflow run --exit-when-done`` as a script, with an Airflow home of the run's own
    (the command's is the project's ``.airflow/``, which another run on the machine may share:
    two Airflows on one SQLite file fail with disk I/O errors)."""
    options = (
        f"data=Path({str(work / 'data')!r}), output=Path({str(work / 'out')!r}), project=find_project(), exit_when_done=True, "
        f"timeout={timeout!r}, tick_seconds={tick!r}, metrics=Path({str(work / 'metrics.json')!r}), "
        f"s3_port={free_port()}, ui_port={free_port()}, airflow_home=Path({str(work / 'airflow')!r})"
    )
    imports = "import sys; from pathlib import Path; from patternflow.local.launcher import LaunchOptions, find_project, run"
    return f"{imports}; sys.exit(run(LaunchOptions({options})))"


def print_targets(run: LoadRun, tick: float, baseline: LoadRun | None) -> None:
    """Each figure of ``run`` beside its target (PASS or MISS) and the baseline's, with the ratio."""
    print(f"\n== make bench-load SCALE={run.scale:g} (tick {tick} s), {time.strftime('%Y-%m-%d %H:%M %Z')}: targets")
    base_label = f"baseline SCALE={baseline.scale:g}" if baseline else "baseline: none"
    print(f"  {'figure':<42} {'target':<14} {f'SCALE={run.scale:g}':<16} {base_label:<20} ratio")
    for figure in FIGURES:
        value = figure.of(run)
        shown = figure.form.format(value) + ("" if figure.meets is None else (" PASS" if figure.meets(value) else " MISS"))
        other = figure.of(baseline) if baseline else None
        ratio = f"x{value / other:.2f}" if other else "-"
        print(f"  {figure.name:<42} {figure.target:<14} {shown:<16} {'-' if other is None else figure.form.format(other):<20} {ratio}")
    same = "PASS" if not run.differences else "MISS"
    base_same = "-" if baseline is None else ("identical" if not baseline.differences else "differ")
    print(f"  {'detection files = patternflow replay':<42} {'identical':<14} {same:<16} {base_same:<20}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiple of the full BankSim size (default 1)")
    parser.add_argument("--tick", type=float, default=0.1, help="seconds between chunks (default 0.1)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds (default 1800)")
    parser.add_argument(
        "--baseline-scale", type=float, default=1.0, help="scale of the baseline run made first at the same tick; 0 for none (default 1)"
    )
    args = parser.parse_args()
    baseline = None
    if args.baseline_scale and args.baseline_scale != args.scale:
        print(f"== baseline: {args.baseline_scale:g} x BankSim at the same tick", flush=True)
        with tempfile.TemporaryDirectory(prefix="patternflow-bench-load-") as work:
            baseline = run_load(args.baseline_scale, args.tick, args.timeout, Path(work))
        print(f"\n== {args.scale:g} x BankSim", flush=True)
    with tempfile.TemporaryDirectory(prefix="patternflow-bench-load-") as work:
        run = run_load(args.scale, args.tick, args.timeout, Path(work))
    print_targets(run, args.tick, baseline)
    if run.differences:
        sys.exit(1)


def compare_with_replay(data: Path, out: Path, replayed: Path) -> list[str]:
    """The pipeline's detection files against ``patternflow replay``'s for the same data, file by
    file and row by row (times aside: they record when each row was detected)."""
    replay(data / "transactions.csv", data / "CustomerImportance.csv", replayed)

    def rows(folder: Path) -> dict[str, list[list[str]]]:
        files = sorted(folder.glob("detection_*.csv"))
        return {path.name: [row[2:] for row in csv.reader(path.read_text().splitlines())] for path in files}

    ours, theirs = rows(out), rows(replayed)
    differences = [f"{name}: only in {'the pipeline' if name in ours else 'replay'}" for name in sorted(ours.keys() ^ theirs.keys())]
    differences += [f"{name}: rows differ" for name in sorted(ours.keys() & theirs.keys()) if ours[name] != theirs[name]]
    if not differences:
        total = sum(len(r) - 1 for r in ours.values())
        print(f"  detection files: identical to patternflow replay's ({len(ours)} files, {total:,} detections)")
    return differences


if __name__ == "__main__":
    main()
