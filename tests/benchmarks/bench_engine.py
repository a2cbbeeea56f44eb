"""Engine benchmark (``make bench``): per-chunk time, growth, whole-replay wall time and memory.

Side by side with a naive baseline (DuckDB recomputing the patterns from all raw history after
each chunk), on full-size generated BankSim and at 10x scale. Prints its figures; asserts nothing
about time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import FOLDED_COLUMNS, WEIGHT_COLUMNS, DetectionEngine
from patternflow.ingest import banksim
from patternflow.ingest.chunking import ChunkedFile
from patternflow.ingest.generate import generate
from patternflow.ingest.parsing import parse_transactions, read_importance

NAIVE_SQL = (Path(__file__).parent / "naive_patterns.sql").read_text()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def describe(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    growth = statistics.median(ms[-5:]) / statistics.median(ms[:5])
    print(
        f"  {name:<34} median {statistics.median(ms):7.1f} ms   p95 {percentile(ms, 0.95):7.1f} ms   "
        f"first 5 {statistics.median(ms[:5]):6.1f} ms   last 5 {statistics.median(ms[-5:]):6.1f} ms   growth x{growth:.2f}"
    )
    tenths = [statistics.median(part) for part in np.array_split(np.array(ms), 10)]
    print(f"  {'':<34} median of each tenth of the stream, ms: {' '.join(f'{t:.1f}' for t in tenths)}")


def engine_per_chunk(data: Path, config: DetectionConfig, passes: int) -> tuple[list[list[float]], int]:
    """Parse + fold + evaluate + dedup per chunk, in memory (no storage I/O): each chunk's times
    over ``passes`` runs of the stream, each by a new engine, and the detections.

    A 2-core machine shared with other work slows single chunks at random by more than the
    differences measured here, hence several passes.
    """
    importance = read_importance(data / "CustomerImportance.csv", columns=WEIGHT_COLUMNS)
    source = ChunkedFile((data / "transactions.csv").read_bytes(), config.chunk_size)
    runs = []
    for _ in range(passes):
        engine = DetectionEngine.start(importance, config)
        times = []
        for chunk in source:
            started = time.perf_counter()
            engine.fold(chunk.index, parse_transactions(chunk.data, "chunk", columns=FOLDED_COLUMNS))
            times.append(time.perf_counter() - started)
        engine.finish()
        runs.append(times)
    return [list(chunk_times) for chunk_times in zip(*runs, strict=True)], engine.detections


def naive_per_chunk(data: Path, config: DetectionConfig) -> tuple[list[float], int]:
    """Parse + append to raw history + recompute all patterns + dedup, per chunk."""
    con = duckdb.connect()
    con.register("importance_arrow", read_importance(data / "CustomerImportance.csv"))
    con.execute("CREATE TABLE importance AS SELECT * FROM importance_arrow")
    con.execute("CREATE TABLE emitted (pattern_id VARCHAR, action_type VARCHAR, customer VARCHAR, merchant VARCHAR)")
    source = ChunkedFile((data / "transactions.csv").read_bytes(), config.chunk_size)
    times = []
    for chunk in source:
        started = time.perf_counter()
        con.register("chunk", parse_transactions(chunk.data, "chunk"))
        if chunk.index == 0:
            con.execute("CREATE TABLE history AS SELECT * FROM chunk")
        else:
            con.execute("INSERT INTO history SELECT * FROM chunk")
        con.execute(f"INSERT INTO emitted SELECT * FROM ({NAIVE_SQL}) EXCEPT SELECT * FROM emitted")
        times.append(time.perf_counter() - started)
    return times, con.execute("SELECT count(*) FROM emitted").fetchone()[0]


# Runs a command and prints its wall time and peak RSS (KiB). The replay is started from this
# small process rather than from the benchmark itself: a child's ru_maxrss counts the memory of
# the process it was forked from until it execs, which from the benchmark (holding the data and
# an engine) would be reported as the replay's.
_MEASURE = (
    "import resource, subprocess, sys, time; started = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def replay_process(data: Path, work: Path) -> tuple[float, float]:
    """Wall time and peak RSS of ``patternflow replay`` as a process, state on local disk."""
    command = [
        sys.executable, "-m", "patternflow.cli", "replay",
        "--transactions", str(data / "transactions.csv"), "--importance", str(data / "CustomerImportance.csv"),
        "--out", str(work / "out"), "--state", str(work / "state"),
    ]  # fmt: skip
    measured = subprocess.run([sys.executable, "-c", _MEASURE, *command], check=True, capture_output=True, text=True)
    wall, peak_kb = measured.stdout.split()
    return float(wall), float(peak_kb) / 1024


def fastest_pass_ms(per_chunk: list[list[float]]) -> float:
    """The median over chunks of each chunk's fastest pass, in ms: the least disturbed pass,
    closer to the code's own cost on a machine whose neighbours slow it down (never the headline
    figure, which takes each chunk's median pass)."""
    return statistics.median(min(chunk_times) for chunk_times in per_chunk) * 1000


def replays(data: Path, work: Path, name: str, runs: int) -> str:
    """``runs`` replay processes, described: median wall time, each run's, peak RSS."""
    measured = [replay_process(data, work / f"{name}-{i}") for i in range(runs)]
    walls = sorted(wall for wall, _ in measured)
    shown = f"median of {len(walls)} runs ({', '.join(f'{w:.2f}' for w in walls)})" if len(walls) > 1 else "one run"
    return f"patternflow replay process: wall {statistics.median(walls):.2f} s, {shown}; peak RSS {max(p for _, p in measured):.0f} MB"


def run(scale: int, naive: bool, work: Path) -> None:
    rows = banksim.ROWS * scale
    data = work / f"banksim-x{scale}"
    started = time.perf_counter()
    generate(data, seed=0, rows=rows)
    print(f"\n== {rows:,} rows (x{scale}), generated in {time.perf_counter() - started:.1f} s")
    config = DetectionConfig()
    passes = 3 if scale == 1 else 1
    per_chunk, detections = engine_per_chunk(data, config, passes)
    times = [statistics.median(chunk_times) for chunk_times in per_chunk]
    print(f"  {len(times)} chunks of {config.chunk_size:,}; patternflow: {detections} detections")
    print(f"  each chunk's time is its median over {passes} passes of the stream")
    describe("patternflow (parse+fold+detect)", times)
    if passes > 1:
        print(f"  {'':<34} fastest of the {passes} passes, per chunk: median {fastest_pass_ms(per_chunk):.1f} ms")
    if naive:
        naive_times, naive_detections = naive_per_chunk(data, config)
        describe("naive DuckDB over raw history", naive_times)
        ratio = statistics.median(times) / statistics.median(naive_times)
        print(f"  naive baseline: {naive_detections} detections; patternflow's median per chunk is {ratio:.3f} of the naive one's")
    print(f"  {replays(data, work, f'replay-x{scale}', 3 if scale == 1 else 1)}")


def probe(chunk: bytes) -> float:
    """The machine's speed now: the median of 20 warm one-thread parses of one chunk, in ms."""
    times = []
    for _ in range(20):
        started = time.perf_counter()
        parse_transactions(chunk, "probe", two_threads=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def wait_for_quiet(chunk: bytes, quiet_ms: float, timeout: float) -> float | None:
    """Probe every second until the machine is as fast as ``quiet_ms``; the probe, or None at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reading = probe(chunk)
        if reading <= quiet_ms:
            return reading
        time.sleep(1)
    return None


def run_at_quiet_moments(runs: int, work: Path, calibrate_seconds: float = 30, timeout: float = 300) -> None:
    """Full size only, each measurement started the moment a probe finds the machine quiet.

    A shared virtual machine slows down and speeds up in bursts of seconds; this measures the
    engine when nothing else is using the CPU, as on a machine of its own. Quiet is within 5% of
    the fastest probe seen while calibrating.
    """
    data = work / "banksim-x1"
    generate(data, seed=0, rows=banksim.ROWS)
    config = DetectionConfig()
    chunk = next(iter(ChunkedFile((data / "transactions.csv").read_bytes(), config.chunk_size))).data
    deadline = time.monotonic() + calibrate_seconds
    fastest = probe(chunk)
    while time.monotonic() < deadline:
        time.sleep(1)
        fastest = min(fastest, probe(chunk))
    quiet_ms = fastest * 1.05
    print(f"\n== {banksim.ROWS:,} rows (x1) at quiet moments: a probe (a warm parse of one chunk) of at most {quiet_ms:.2f} ms")
    medians = []
    for run_number in range(1, runs + 1):
        reading = wait_for_quiet(chunk, quiet_ms, timeout)
        if reading is None:
            print(f"  run {run_number}: no quiet moment in {timeout:.0f} s")
            continue
        per_chunk, detections = engine_per_chunk(data, config, 3)
        ms = [statistics.median(chunk_times) * 1000 for chunk_times in per_chunk]
        growth = statistics.median(ms[-5:]) / statistics.median(ms[:5])
        medians.append(statistics.median(ms))
        print(
            f"  run {run_number} (probe {reading:.2f} ms): per chunk median {statistics.median(ms):.1f} ms   "
            f"p95 {percentile(ms, 0.95):.1f} ms   growth x{growth:.2f}   "
            f"fastest pass {fastest_pass_ms(per_chunk):.1f} ms   {detections} detections"
        )
        reading = wait_for_quiet(chunk, quiet_ms, timeout)
        if reading is None:
            continue
        print(f"  run {run_number} (probe {reading:.2f} ms): {replays(data, work, f'replay-quiet-{run_number}', 3)}")
    if medians:
        print(f"  per-chunk medians {min(medians):.1f} to {max(medians):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", default="1,10", help="comma-separated data scales (default 1,10)")
    parser.add_argument(
        "--at-quiet-moments", type=int, default=0, metavar="RUNS", help="instead: RUNS full-size runs, each when the machine is quiet"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="patternflow-bench-") as work:
        if args.at_quiet_moments:
            run_at_quiet_moments(args.at_quiet_moments, Path(work))
            return
        for scale in (int(s) for s in args.scales.split(",")):
            run(scale, naive=scale == 1, work=Path(work))


if __name__ == "__main__":
    main()
