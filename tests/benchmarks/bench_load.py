"""Load benchmark (``make bench-load``): the producer at 10 chunks a second (tick 0.1 s) through the
real pipeline (``patternflow run``: S3 server on 127.0.0.1, Airflow standalone, both DAGs) on
full-size generated BankSim, or ``--scale N`` times it. Prints the upload-to-commit lag
distribution, the largest backlog and the peak memory (RSS) of the detection task, and checks the
detection files against ``patternflow replay``'s for the same data (exit 1 if they differ).

The peak RSS is sampled (every 0.2 s) over the run's task processes (process title ``airflow
worker -- <task instance id>``) that have DuckDB loaded: only ``detect_patterns`` runs the engine.
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
from pathlib import Path

import psutil

from patternflow.ingest import banksim
from patternflow.ingest.generate import generate
from patternflow.replay import replay
from tests.benchmarks.bench_e2e import PROJECT, report
from tests.helpers import free_port


class PeakRss:
    """Samples the RSS of every task process under ``root`` that runs the engine; keeps the peak."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

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
                        self.peak = max(self.peak, child.memory_info().rss)
                        self.samples += 1
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                    continue


def _runs_duckdb(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "duckdb" in maps.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiple of the full BankSim size (default 1)")
    parser.add_argument("--tick", type=float, default=0.1, help="seconds between chunks (default 0.1)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds (default 1800)")
    args = parser.parse_args()
    rows = round(banksim.ROWS * args.scale)
    with tempfile.TemporaryDirectory(prefix="patternflow-bench-load-") as work:
        work_path = Path(work)
        print(f"generating {rows:,} transactions ...", flush=True)
        generate(work_path / "data", seed=0, rows=rows)
        command = [
            sys.executable, "-m", "patternflow.cli", "run", "--data", str(work_path / "data"), "--output", str(work_path / "out"),
            "--exit-when-done", "--timeout", str(args.timeout), "--tick", str(args.tick), "--metrics", str(work_path / "metrics.json"),
            "--s3-port", str(free_port()), "--ui-port", str(free_port()),
        ]  # fmt: skip
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=PROJECT)
        with PeakRss(process.pid) as memory:
            code = process.wait()
        if code:
            sys.exit(f"patternflow run exited with code {code}")
        metrics = json.loads((work_path / "metrics.json").read_text())
        print(f"\n{rows:,} rows at tick {args.tick} s: {time.monotonic() - started:.0f} s including Airflow's start")
        report(metrics)
        if memory.samples:
            print(f"  peak RSS of a detect_patterns task process: {memory.peak / 2**20:.0f} MiB ({memory.samples} samples)")
        else:
            print("  peak RSS of the detection task: no task process running the engine was seen by the sampler")
        differences = compare_with_replay(work_path / "data", work_path / "out", work_path / "replay")
        if differences:
            sys.exit("  detection files differ from patternflow replay's:\n    " + "\n    ".join(differences))


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
