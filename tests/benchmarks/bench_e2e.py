"""End-to-end benchmark (``make bench-e2e``): upload-to-commit lag of every chunk through the real
pipeline (``patternflow run``: S3 server on 127.0.0.1, Airflow standalone, both DAGs), on
full-size generated BankSim with a 1-second tick. Prints its figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from patternflow.ingest.generate import generate

PROJECT = Path(__file__).resolve().parents[2]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def largest_backlog(metrics: list[dict], until: str = "committed_at") -> int:
    """Most chunks uploaded but not yet taken (``started_at``) or committed at any one time."""
    return backlog_peak(metrics, until)[0]


def backlog_peak(metrics: list[dict], until: str = "committed_at", after: float = float("-inf")) -> tuple[int, float]:
    """The largest backlog (as ``largest_backlog``) from the moment ``after`` on, and when it was."""
    events = sorted([(m["uploaded_at"], 1) for m in metrics] + [(m[until], -1) for m in metrics])
    backlog = largest = 0
    when = events[0][0] if events else 0.0
    for moment, steps in itertools.groupby(events, key=lambda event: event[0]):
        backlog += sum(step for _, step in steps)
        if moment >= after and backlog > largest:
            largest, when = backlog, moment
    return largest, when


def largest_burst(metrics: list[dict], window: float = 1.0) -> int:
    """Most chunks uploaded within ``window`` seconds: a producer scheduled every tick by Airflow
    uploads whatever fell due since its last run, so at 0.1 s a tick its uploads come in bursts,
    and a burst is a backlog however fast the detector."""
    uploads = sorted(m["uploaded_at"] for m in metrics)
    return max((bisect.bisect_right(uploads, t + window) - i for i, t in enumerate(uploads)), default=0)


def report(metrics: list[dict]) -> None:
    lags = [m["committed_at"] - m["uploaded_at"] for m in metrics]
    span = max(m["committed_at"] for m in metrics) - min(m["uploaded_at"] for m in metrics)
    runs = len({m["committed_at"] for m in metrics})
    print(f"\n== {len(metrics)} chunks through the pipeline, {runs} detection runs ({len(metrics) / runs:.1f} chunks a run)")
    print(
        f"  upload -> commit lag: median {statistics.median(lags):.2f} s   p95 {percentile(lags, 0.95):.2f} s   "
        f"min {min(lags):.2f} s   max {max(lags):.2f} s"
    )
    first_upload, first_commit = min(m["uploaded_at"] for m in metrics), min(m["committed_at"] for m in metrics)
    largest, when = backlog_peak(metrics)
    steady, steady_when = backlog_peak(metrics, after=first_commit)
    print(
        f"  largest backlog: {largest_backlog(metrics, 'started_at')} chunks waiting to be taken, "
        f"{largest} uploaded but not yet committed ({when - first_upload:.1f} s after the first upload); "
        f"after the first commit ({first_commit - first_upload:.1f} s): {steady} ({steady_when - first_upload:.1f} s)"
    )
    print(f"  largest upload burst: {largest_burst(metrics)} chunks uploaded within 1 s")
    print(f"  whole stream: {span:.1f} s from the first upload to the last commit")
    print("  lag distribution (s):")
    for low in range(0, int(max(lags)) + 1):
        count = sum(low <= lag < low + 1 for lag in lags)
        print(f"    {low:>2}-{low + 1:<2} {'#' * count} {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, help="transactions to generate (default: full BankSim size)")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between chunks (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="patternflow-bench-e2e-") as work:
        work_path = Path(work)
        generate(work_path / "data", seed=0, **({"rows": args.rows} if args.rows else {}))
        command = [
            sys.executable, "-m", "patternflow.cli", "run", "--data", str(work_path / "data"), "--output", str(work_path / "out"),
            "--exit-when-done", "--timeout", "900", "--tick", str(args.tick), "--metrics", str(work_path / "metrics.json"),
        ]  # fmt: skip
        subprocess.run(command, check=True, cwd=PROJECT)
        report(json.loads((work_path / "metrics.json").read_text()))


if __name__ == "__main__":
    main()
