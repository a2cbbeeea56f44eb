"""Partition benchmark (``make bench-partitions``): what merchant partitions cost and save, for
N = 1, 2, 4 and 8, at 10x the BankSim volume (5,946,430 rows, the data ``make bench-scale``
generates into ``.bench-data/`` and reuses). Prints its figures beside their targets with PASS or
MISS; asserts nothing.

1. A partition's committed state: the chain bytes its ``CURRENT`` names (mean and max over the
   partitions; for N = 1 the one engine's ``state/CURRENT``) and the time ``StateStore.load()``
   takes to read it (per partition the median of several loads). Target: 1/N of N = 1's within
   1.3x, printed as (value at N) / (value at 1 / N).
2. The peak RSS of a partition task process folding one more chunk of that stream (the largest
   partition), beside the same process folding a chunk into an empty state, and beside the floors
   of a bare Python process importing the package, with and without ``airflow.sdk`` (what an
   Airflow task process costs before it folds anything).
3. Through real Airflow (``patternflow run --partitions N``, standalone) at a chunk a second on
   the full-size data (60 chunks): the upload-to-commit lag, median and p95, N = 4 beside N = 1
   measured just before and again just after (the merge adds a task to every detection run).

The streams of parts 1 and 2 are built without Airflow: ``produce`` (fast) onto a ``LocalStore``
bucket once, then, per N under a state prefix of its own (``n<N>/state/``), the one-engine
``detect`` (N = 1) or ``detect_partition`` for each partition and ``write_detection_files``, up
to the last chunk but one, in a child process per N. Once part 2 has folded the last chunk,
every N is run to the stream's end and its detection files are compared with N = 1's.

The machine may be shared and its speed swing between minutes, so every speed figure is a ratio
to N = 1 measured in the same run: load times in rounds that visit every N in turn, lags with
N = 1 run on each side of N = 4.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from patternflow.engine.config import DetectionConfig
from patternflow.engine.state import StateStore
from patternflow.engine.state import chain_bytes as state_chain_bytes
from patternflow.engine.store import LocalStore
from patternflow.ingest import banksim
from patternflow.pipeline.detector import detect
from patternflow.pipeline.partitioned import detect_partition, write_detection_files
from patternflow.pipeline.producer import load_manifest, produce
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.sources import source_opener
from tests.benchmarks.bench_e2e import percentile, report
from tests.benchmarks.bench_load import PeakRss, compare_with_replay, launch_script
from tests.benchmarks.bench_scale import PROJECT, Data, MiB, bench_data, compare_files, run_measured, verdict, work_folder

PARTITIONS = (1, 2, 4, 8)
SHARE_TARGET = 1.3
"""A partition's state and load time: at most this times 1/N of N = 1's."""
LOADS = 5
LAG_TICK = 1.0
LAG_PARTITIONS = 4


# -- the folded streams ----------------------------------------------------------------------------


def stream_settings(data: Data, partitions: int, state: str = "state", chunks_per_run: int = 0) -> PipelineSettings:
    """The stream's settings for ``partitions``, with a state and output prefix of its own so that
    every N folds the same uploaded chunks; one run takes ``chunks_per_run`` chunks (0: all)."""
    return PipelineSettings(
        bucket="bench",
        transactions=str(data.transactions),
        importance=str(data.importance),
        state_prefix=f"n{partitions}/{state}/",
        output_prefix=f"n{partitions}/output_detections{'' if state == 'state' else '_' + state}/",
        partitions=partitions,
        max_rows_per_run=data.rows,
        max_chunks_per_run=chunks_per_run,
    )


def upload(bucket: Path, data: Data) -> int:
    """Every chunk of ``data`` and CustomerImportance onto the bucket folder; the chunk count."""
    settings = stream_settings(data, 1)
    produce(LocalStore(bucket), settings, source_opener(lambda: None), time.time(), fast=True)
    return load_manifest(LocalStore(bucket), settings).chunks


def fold(bucket: Path, data: Data, partitions: int, chunks: int) -> dict[str, float]:
    """Fold ``partitions``' stream up to ``chunks`` chunks as the DAG's tasks would, one task after
    the other; each task's seconds (the child of ``built``)."""
    store = LocalStore(bucket)
    seconds: dict[str, float] = {}
    while (done := merged(store, stream_settings(data, partitions))) < chunks:
        for name, task in detection_run(store, stream_settings(data, partitions, chunks_per_run=chunks - done)):
            started = time.perf_counter()
            task()
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        if merged(store, stream_settings(data, partitions)) == done:
            raise RuntimeError(f"N={partitions}: a detection run merged no chunk past {done}")
    return seconds


def detection_run(store: LocalStore, settings: PipelineSettings) -> list[tuple[str, Callable[[], object]]]:
    """The tasks of one run of the detection DAG, in order, by name."""
    if settings.partitions == 1:
        return [("detect_patterns", partial(detect, store, settings))]
    tasks = [(f"detect_partition[{k}]", partial(detect_partition, store, settings, k)) for k in range(settings.partitions)]
    return [*tasks, ("write_detection_files", partial(write_detection_files, store, settings))]


def merged(store: LocalStore, settings: PipelineSettings) -> int:
    """Chunks the stream has committed (its ``CURRENT``; 0 before the first commit)."""
    try:
        return json.loads(store.get(f"{settings.state_prefix}CURRENT"))["chunks_folded"]
    except KeyError:
        return 0


def built(bucket: Path, data: Data, partitions: int, chunks: int) -> dict[str, float]:
    """``fold`` in a child process of its own (its memory gone with it): each task's seconds."""
    command = [sys.executable, "-m", "tests.benchmarks.bench_partitions", "--fold", str(bucket), str(data.rows), str(partitions)]
    measured = run_measured([*command, str(chunks)])
    return json.loads(measured.stdout.splitlines()[-1])


# -- part 1: state bytes and load time --------------------------------------------------------------


def state_prefixes(settings: PipelineSettings) -> list[str]:
    """The one engine's state prefix, or each partition's."""
    if settings.partitions == 1:
        return [settings.state_prefix]
    return [f"{settings.state_prefix}partitions/{k}/" for k in range(settings.partitions)]


def chain_bytes(store: LocalStore, prefix: str) -> int:
    """The Parquet bytes of the chain ``<prefix>CURRENT`` names: what a load reads."""
    manifest = json.loads(store.get(f"{prefix}CURRENT"))
    return state_chain_bytes(manifest)


def timed_load(store: LocalStore, prefix: str) -> float:
    started = time.perf_counter()
    loaded = StateStore(store, prefix).load()
    seconds = time.perf_counter() - started
    if loaded is None:
        raise RuntimeError(f"no state under {prefix}")
    return seconds


@dataclass
class StateFigures:
    partitions: int
    bytes: list[int]
    """Per partition (one for N = 1)."""
    loads: list[list[float]] = field(default_factory=list)
    """Per partition, every load's seconds."""
    task_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def load_medians(self) -> list[float]:
        return [statistics.median(times) for times in self.loads]

    @property
    def largest(self) -> int:
        return max(range(len(self.bytes)), key=self.bytes.__getitem__)


def measure_loads(store: LocalStore, figures: dict[int, StateFigures], settings: dict[int, PipelineSettings], rounds: int) -> None:
    """``rounds`` loads of every partition of every N, a round visiting each N in turn, so that a
    slow minute of the machine falls on all of them alike."""
    for f in figures.values():
        f.loads = [[] for _ in f.bytes]
    for _ in range(rounds):
        for n, f in figures.items():
            for k, prefix in enumerate(state_prefixes(settings[n])):
                f.loads[k].append(timed_load(store, prefix))


def share(value: float, at_one: float, partitions: int) -> float:
    """(value at N) / (value at 1 / N): 1.0 when the state divides evenly."""
    return value / (at_one / partitions)


def print_states(figures: dict[int, StateFigures], settings: dict[int, PipelineSettings], rounds: int) -> None:
    one = figures[1]
    print(f"\n== 1. a partition's committed state (chain bytes of its CURRENT) and its load time (median of {rounds} loads)")
    print(f"  target: (value at N) / (value at N=1 / N) <= {SHARE_TARGET}")
    columns = f"{'bytes mean':>11} {'max':>10} {'share mean/max':>18}   {'load mean':>10} {'max':>9}  share mean/max"
    print(f"  {'N':>2} {'CURRENT':<33} {columns}")
    for n, f in figures.items():
        where = "state/CURRENT" if n == 1 else "state/partitions/<k>/CURRENT"
        mean_b, max_b = statistics.mean(f.bytes), max(f.bytes)
        mean_t, max_t = statistics.mean(f.load_medians), max(f.load_medians)
        b1, t1 = one.bytes[0], one.load_medians[0]
        shares = [share(mean_b, b1, n), share(max_b, b1, n), share(mean_t, t1, n), share(max_t, t1, n)]
        marks = [f"x{s:.2f} {verdict(s <= SHARE_TARGET)}" for s in shares]
        print(
            f"  {n:>2} {settings[n].state_prefix.split('/')[0] + '/' + where:<33} {mean_b / MiB:>7.2f} MiB {max_b / MiB:>6.2f} MiB "
            f"{marks[0] + ' / ' + marks[1]:>18}   {mean_t * 1e3:>7.0f} ms {max_t * 1e3:>6.0f} ms  {marks[2]} / {marks[3]}"
        )
    print("  per partition (MiB): " + "; ".join(f"N={n}: " + " ".join(f"{b / MiB:.1f}" for b in f.bytes) for n, f in figures.items()))


# -- part 2: a partition task's peak RSS ----------------------------------------------------------

TASK = """
import json, sys
from patternflow.engine.store import LocalStore
from patternflow.pipeline.settings import PipelineSettings
store, settings, partition = LocalStore(sys.argv[1]), PipelineSettings(**json.loads(sys.argv[2])), int(sys.argv[3])
if settings.partitions == 1:
    from patternflow.pipeline.detector import detect
    print(json.dumps(detect(store, settings).to_json()))
else:
    from patternflow.pipeline.partitioned import detect_partition
    print(json.dumps(detect_partition(store, settings, partition).to_json()))
"""
"""One detection task (``detect_patterns`` for N = 1, else ``detect_partition``) on the bucket
folder: what the Airflow task runs, without Airflow."""

FLOORS = {
    "python importing the package": "import patternflow.pipeline.partitioned",
    "python importing airflow.sdk and the package (an Airflow task process's own floor)": (
        "import os, sys; os.environ['AIRFLOW_HOME'] = sys.argv[1]; import airflow.sdk, patternflow.pipeline.partitioned"
    ),
}
"""Bare processes: the floor under any task's peak (``AIRFLOW_HOME`` a folder of the benchmark's
own: importing Airflow writes a default configuration there)."""


@dataclass(frozen=True)
class Measure:
    seconds: float
    peak: int


@dataclass(frozen=True)
class TaskRss:
    """One N's detection task for one chunk, in three streams."""

    partitions: int
    partition: int
    state_bytes: int
    folded: Measure
    """The last chunk, into the state of every chunk before it."""
    first: Measure
    """The first chunk of the same stream into an empty state: a stream's first run, which also
    reads the partition's CustomerImportance rows."""
    floor: Measure
    """The one chunk of a one-chunk stream (its CustomerImportance as small): the floor."""


def task_command(bucket: Path, settings: PipelineSettings, partition: int) -> list[str]:
    return [sys.executable, "-c", TASK, str(bucket), json.dumps(settings.to_json()), str(partition)]


def one_chunk(bucket: Path, settings: PipelineSettings, partition: int) -> Measure:
    """The task for one chunk in a fresh process: its wall time and peak RSS."""
    run = run_measured(task_command(bucket, settings, partition))
    taken = json.loads(run.stdout.splitlines()[-1])["chunks"]
    if len(taken) != 1:
        raise RuntimeError(f"a task of N={settings.partitions} took chunks {taken}, not one")
    return Measure(run.seconds, run.peak_rss)


def one_more_chunk(bucket: Path, data: Data, tiny: tuple[Path, Data], figures: StateFigures) -> TaskRss:
    """The largest partition's task for the last chunk, then the same task for the first chunk into
    an empty state (a state prefix of its own over the same chunks), then for the one chunk of the
    one-chunk stream ``tiny``, each in a fresh process."""
    n, k = figures.partitions, figures.largest
    folded = one_chunk(bucket, stream_settings(data, n, chunks_per_run=1), k)
    first = one_chunk(bucket, stream_settings(data, n, state="empty", chunks_per_run=1), k)
    floor = one_chunk(tiny[0], stream_settings(tiny[1], n, chunks_per_run=1), k)
    return TaskRss(n, k, figures.bytes[k], folded, first, floor)


def one_chunk_stream(bucket: Path) -> tuple[Path, Data]:
    """A stream of one chunk (a chunk's rows of generated BankSim), uploaded to its own bucket folder."""
    data = bench_data(DetectionConfig().chunk_size)
    upload(bucket, data)
    return bucket, data


def print_rss(tasks: list[TaskRss], floors: dict[str, int]) -> None:
    print("\n== 2. peak RSS of a detection task process folding one chunk (the largest partition), each in a fresh process")
    print("  last chunk: into the state of all before it; first chunk: the same stream's first run (empty state, reads its")
    print("  CustomerImportance rows); floor: the same task on a one-chunk stream (empty state, a chunk's CustomerImportance)")
    heads = f"{'N':>2} {'task':<22} {'its state':>10} {'last chunk':>11} {'first chunk':>12}"
    print(f"  {heads} {'floor':>8} {'above floor':>12}  wall, last / floor")
    for t in tasks:
        task = "detect_patterns" if t.partitions == 1 else f"detect_partition[{t.partition}]"
        print(
            f"  {t.partitions:>2} {task:<22} {t.state_bytes / MiB:>6.1f} MiB {t.folded.peak / MiB:>7.0f} MiB "
            f"{t.first.peak / MiB:>8.0f} MiB "
            f"{t.floor.peak / MiB:>4.0f} MiB {(t.folded.peak - t.floor.peak) / MiB:>8.0f} MiB  "
            f"{t.folded.seconds:.2f} s / {t.floor.seconds:.2f} s (x{t.folded.seconds / t.floor.seconds:.2f})"
        )
    above_one = tasks[0].folded.peak - tasks[0].floor.peak
    if above_one > 0:
        shares = [f"N={t.partitions} x{share(t.folded.peak - t.floor.peak, above_one, t.partitions):.2f}" for t in tasks[1:]]
        print("  above the floor, (value at N) / (value at N=1 / N): " + ", ".join(shares))
    for name, peak in floors.items():
        print(f"  floor, {name}: {peak / MiB:.0f} MiB")


# -- to the end: every N's files against N = 1's -----------------------------------------------------


def finish(bucket: Path, data: Data, partitions: int, chunks: int, output: Path) -> None:
    """The stream of ``partitions`` to its end (every partition's last chunk and the merge), its
    detection files copied out to ``output``."""
    built(bucket, data, partitions, chunks)
    store, settings = LocalStore(bucket), stream_settings(data, partitions)
    output.mkdir(parents=True)
    for key in store.list(settings.output_prefix):
        (output / key.rsplit("/", 1)[1]).write_bytes(store.get(key))


# -- part 3: the lag through Airflow --------------------------------------------------------------------


@dataclass(frozen=True)
class LagRun:
    partitions: int
    metrics: list[dict]
    seconds: float
    peak_rss: int
    differences: list[str]

    @property
    def lags(self) -> list[float]:
        return [m["committed_at"] - m["uploaded_at"] for m in self.metrics]

    @property
    def median(self) -> float:
        return statistics.median(self.lags)

    @property
    def p95(self) -> float:
        return percentile(self.lags, 0.95)

    def phases(self) -> dict[str, float]:
        """Mean seconds of a detection run (its chunks share a commit time): from its first chunk's
        upload to its first fold's start (the sensor, the scheduler, the task's start), from then to
        its last fold's end (for N > 1 the slowest partition's), from then to the commit (for N > 1
        the merge task), and between two commits."""
        runs: dict[float, list[dict]] = {}
        for m in self.metrics:
            runs.setdefault(m["committed_at"], []).append(m)
        phases = [
            (
                min(m["started_at"] for m in ms) - min(m["uploaded_at"] for m in ms),
                max(m["finished_at"] for m in ms) - min(m["started_at"] for m in ms),
                commit - max(m["finished_at"] for m in ms),
            )
            for commit, ms in runs.items()
        ]
        commits = sorted(runs)
        between = [b - a for a, b in itertools.pairwise(commits)]
        names = ("upload to fold", "folding", "fold to commit")
        return {name: statistics.mean(p[i] for p in phases) for i, name in enumerate(names)} | {
            "between commits": statistics.mean(between) if between else 0.0
        }


def run_lag(partitions: int, data: Data, work: Path, timeout: float) -> LagRun:
    """``patternflow run --exit-when-done`` (bench_load's launch script) with PATTERNFLOW_PARTITIONS
    in its environment, which the launcher passes on to Airflow."""
    work.mkdir(parents=True)
    (work / "data").symlink_to(data.folder)
    env = os.environ | {"PATTERNFLOW_PARTITIONS": str(partitions)}
    print(f"\n-- patternflow run, {partitions} partition(s), tick {LAG_TICK} s ...", flush=True)
    started = time.monotonic()
    with open(work / "run.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", launch_script(work, LAG_TICK, timeout)], cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        with PeakRss(process.pid) as memory:
            code = process.wait()
    if code:
        sys.exit(f"patternflow run with {partitions} partition(s) exited with code {code}; its output: {work / 'run.log'}")
    metrics = json.loads((work / "metrics.json").read_text())
    report(metrics)
    differences = compare_with_replay(work / "data", work / "out", work / "replay")
    return LagRun(partitions, metrics, time.monotonic() - started, memory.peak, differences)


def print_lags(before: LagRun, partitioned: LagRun, after: LagRun, data: Data) -> None:
    print(f"\n== 3. upload -> commit lag through Airflow at tick {LAG_TICK} s, {data.rows:,} rows ({len(partitioned.metrics)} chunks)")
    command = f".venv/bin/patternflow run --data {os.path.relpath(data.folder, PROJECT)} --tick {LAG_TICK:g} --exit-when-done"
    for run, label in ((before, "N=1 before"), (partitioned, f"N={partitioned.partitions}"), (after, "N=1 after")):
        runs = len({m["committed_at"] for m in run.metrics})
        same = "files = replay's" if not run.differences else "FILES DIFFER: " + "; ".join(run.differences[:3])
        print(
            f"  {label:<11} median {run.median:5.2f} s  p95 {run.p95:5.2f} s   {runs} detection runs, "
            f"largest engine task peak RSS {run.peak_rss / MiB:.0f} MiB, {same}"
            f"   ({command} --partitions {run.partitions})"
        )
        print("  " + " " * 12 + "a run, mean: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.phases().items()))
    base = statistics.mean([before.median, after.median])
    print(
        f"  N={partitioned.partitions} median / N=1's: x{partitioned.median / before.median:.2f} (before), "
        f"x{partitioned.median / after.median:.2f} (after), x{partitioned.median / base:.2f} (their mean); "
        f"difference {partitioned.median - base:+.2f} s; p95 difference {partitioned.p95 - statistics.mean([before.p95, after.p95]):+.2f} s"
    )


# -- main ---------------------------------------------------------------------------------------------


def parts_argument(text: str) -> set[int]:
    parts = {int(p) for p in text.split(",") if p.strip()}
    if not parts or not parts <= {1, 2, 3}:
        raise argparse.ArgumentTypeError("a comma-separated list of 1, 2 and 3")
    return parts


def states_and_tasks(scale: int, parts: set[int], rounds: int, work: Path) -> None:
    """Parts 1 and 2 on one bucket of ``scale`` x BankSim, then every N to the end against N = 1."""
    data = bench_data(banksim.ROWS * scale)
    bucket = work / "bucket"
    started = time.perf_counter()
    chunks = upload(bucket, data)
    uploaded = time.perf_counter() - started
    print(f"\n{scale}x BankSim: {data.rows:,} rows, {chunks} chunks; uploaded to a LocalStore bucket in {uploaded:.0f} s")
    store = LocalStore(bucket)
    settings = {n: stream_settings(data, n) for n in PARTITIONS}
    figures: dict[int, StateFigures] = {}
    for n in PARTITIONS:
        print(f"-- folding {chunks - 1} chunks with N={n} ...", file=sys.stderr, flush=True)
        seconds = built(bucket, data, n, chunks - 1)
        figures[n] = StateFigures(n, [chain_bytes(store, p) for p in state_prefixes(settings[n])], task_seconds=seconds)
    measure_loads(store, figures, settings, rounds)
    if 1 in parts:
        print_states(figures, settings, rounds)
        print("  task seconds to fold the stream (not a speed target: each N folded at another minute):")
        for n, f in figures.items():
            slowest = max(v for k, v in f.task_seconds.items() if k != "write_detection_files")
            merge = f.task_seconds.get("write_detection_files", 0.0)
            total, one = sum(f.task_seconds.values()), sum(figures[1].task_seconds.values())
            print(f"    N={n}: all tasks {total:.0f} s (x{total / one:.2f} of N=1), the slowest detection task {slowest:.0f} s", end="")
            print(f", the merge {merge:.0f} s")
    if 2 in parts:
        tiny = one_chunk_stream(work / "one-chunk-bucket")
        tasks = [one_more_chunk(bucket, data, tiny, figures[n]) for n in PARTITIONS]
        floors = {name: run_measured([sys.executable, "-c", code, str(work / "airflow")]).peak_rss for name, code in FLOORS.items()}
        print_rss(tasks, floors)
    print("\n-- every N to the end of the stream, files against N=1's ...", file=sys.stderr, flush=True)
    outputs = {}
    for n in PARTITIONS:
        outputs[n] = work / f"files-n{n}"
        finish(bucket, data, n, chunks, outputs[n])
    for n in PARTITIONS[1:]:
        differences = compare_files(outputs[n], outputs[1])
        files = len(list(outputs[n].glob("detection_*.csv")))
        print(f"  N={n}: {files} detection files, " + ("identical to N=1's" if not differences else f"DIFFERENT: {differences[:3]}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=10, help="multiple of BankSim for parts 1 and 2 (default 10)")
    parser.add_argument("--parts", type=parts_argument, default={1, 2, 3}, help="which parts, e.g. 1,2 (default 1,2,3)")
    parser.add_argument("--loads", type=int, default=LOADS, help=f"loads of each state for part 1 (default {LOADS})")
    parser.add_argument("--timeout", type=float, default=900, help="part 3: give up a pipeline run after this many seconds")
    parser.add_argument("--fold", nargs=4, metavar="ARG", help=argparse.SUPPRESS)  # the child of built
    args = parser.parse_args()
    if args.fold:
        bucket, rows, partitions, chunks = args.fold
        print(json.dumps(fold(Path(bucket), bench_data(int(rows)), int(partitions), int(chunks))))
        return
    sys.stdout.reconfigure(line_buffering=True)
    parts = ",".join(map(str, sorted(args.parts)))
    print(
        f"make bench-partitions   (.venv/bin/python -m tests.benchmarks.bench_partitions --scale {args.scale} --parts {parts}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores)"
    )
    with work_folder() as work:
        if args.parts & {1, 2}:
            states_and_tasks(args.scale, args.parts, args.loads, work / "streams")
        if 3 in args.parts:
            data = bench_data(banksim.ROWS)
            runs = [run_lag(n, data, work / f"lag-{i}-n{n}", args.timeout) for i, n in enumerate((1, LAG_PARTITIONS, 1))]
            print_lags(*runs, data)


if __name__ == "__main__":
    main()
