"""Scale benchmark (``make bench-scale``): ``patternflow replay`` at 1x, 10x and 100x the BankSim
volume (594,643, 5,946,430 and 59,464,300 rows; customers grow with the rows, 411,000 at 100x).
Prints its figures beside their targets with PASS or MISS; asserts nothing.

For each scale:

- the median time of a chunk's fold (``ChunkResult.seconds``) over that of 1x;
- the peak RSS of the replay process (``patternflow replay --state``, measured by a lean parent);
- the bytes a state commit writes with every chunk committed (``--commit-every 0``: the same
  chunks a commit at every scale), over 1x's, with the snapshot / delta split;
- wall seconds per million rows, over 1x's;
- whether a replay killed (SIGKILL) once half its chunks are committed, then resumed, ends with
  the same detection files as an uninterrupted one (the two time columns aside).

The machine may be shared and its speed swing between minutes, so every speed figure is a ratio
to 1x measured in the same run: once at the start, and again right after each larger scale (the
nearer one decides PASS or MISS). The data is generated once, block by block in bounded memory,
into ``.bench-data/`` at the project's root (git-ignored) and reused while its sizes match.

Each scale replays its stream three times (plain, recorded, killed and resumed): 1x and 10x take
a few minutes, 100x (59 million rows, 8 GB of files) an hour or more on two cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from patternflow.engine.config import DetectionConfig
from patternflow.ingest import banksim
from patternflow.ingest.generate import IMPORTANCE_FILE, TRANSACTIONS_FILE, generate

PROJECT = Path(__file__).resolve().parents[2]
DATA = PROJECT / ".bench-data"
SEED = 0
BLOCK_ROWS = 1_000_000
"""Rows the generator holds at once: the 100x table would take about 17 GB whole."""
MiB = 2**20

FOLD_RATIO_AT_100X = 2.0
RSS_LIMITS_MB = {10: 400, 100: 800}
COMMIT_BYTES_RATIO_AT_10X = 1.5


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    folder: Path
    rows: int
    made_in: float | None
    """Seconds it took to generate; None when an earlier run's files were reused."""

    @property
    def transactions(self) -> Path:
        return self.folder / TRANSACTIONS_FILE

    @property
    def importance(self) -> Path:
        return self.folder / IMPORTANCE_FILE

    @property
    def chunks(self) -> int:
        return -(-self.rows // DetectionConfig().chunk_size)


def bench_data(rows: int, root: Path = DATA, block_rows: int = BLOCK_ROWS) -> Data:
    """Synthetic BankSim files of ``rows`` transactions, generated once and then reused: a
    ``generated.json`` beside them records the rows, seed and block size and each file's size, and
    files that no longer match it (an interrupted generation, a hand edit) are made again."""
    folder = root / f"rows-{rows}-seed-{SEED}"
    marker = folder / "generated.json"
    expected = {"rows": rows, "seed": SEED, "block_rows": block_rows}
    if marker.exists():
        recorded = json.loads(marker.read_text())
        sizes = {name: (folder / name).stat().st_size if (folder / name).exists() else None for name in recorded.get("files", {})}
        if {k: recorded.get(k) for k in expected} == expected and sizes == recorded["files"] and len(sizes) == 2:
            return Data(folder, rows, None)
        marker.unlink()
    started = time.perf_counter()
    made = generate(folder, seed=SEED, rows=rows, block_rows=block_rows)
    files = {path.name: path.stat().st_size for path in (made.transactions, made.importance)}
    marker.write_text(json.dumps({**expected, "customers": made.customers, "files": files}, indent=1) + "\n")
    return Data(folder, rows, time.perf_counter() - started)


# -- measured child processes -------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss: int
    """Bytes: the command's own peak, as its lean parent saw it (``run_measured``)."""
    stdout: str


_LEAN = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr, flush=True); sys.exit(code)"
)
"""A lean Python process that runs a command and prints that one child's peak RSS (KiB) last on
stderr. A child's peak counts the memory of the process it was forked from (Linux keeps the
forked copy's high-water mark across ``exec``): forked from this benchmark, which holds a whole
in-process replay, every command would seem as large as it; forked from the lean one, it is itself."""


def run_measured(command: list[str]) -> Measured:
    """Run ``command`` to its end, started by the lean ``_LEAN`` process; its wall time, peak RSS
    and output. Its output goes to files, not pipes: nobody reads a pipe while it runs."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen([sys.executable, "-c", _LEAN, *command], cwd=PROJECT, stdout=out, stderr=errors, text=True)
        process.wait()
        seconds = time.perf_counter() - started
        out.seek(0)
        errors.seek(0)
        *messages, kib = errors.read().splitlines() or ["", "0"]
        if process.returncode:
            raise RuntimeError(f"{shown(command)} exited with {process.returncode}:\n" + "\n".join(messages)[-4000:])
        return Measured(seconds, int(kib) * 1024, out.read())


def replay_command(data: Data, out: Path, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "patternflow.cli", "replay", "--transactions", str(data.transactions), "--importance", str(data.importance),
        "--out", str(out), "--state", str(state), *extra,
    ]  # fmt: skip


def shown(command: list[str]) -> str:
    """A command as someone at the project's root would type it."""
    words = [".venv/bin/patternflow" if w == "patternflow.cli" else w for w in command if w not in (sys.executable, "-m")]
    return " ".join(os.path.relpath(w, PROJECT) if w.startswith(str(PROJECT)) else w for w in words)


# -- the recorded replay: fold times and commits --------------------------------------------------


@dataclass
class Recording:
    """What one in-process replay with every chunk committed saw, written as JSON by the child."""

    fold_seconds: list[float] = field(default_factory=list)
    commits: list[dict] = field(default_factory=list)
    """Per commit: ``kind``, ``table_bytes``, ``bytes_written``."""
    seconds: float = 0.0


def record_replay(transactions: str, importance: str, out: str, state: str, result: str) -> None:
    """The child of ``recorded_replay``: replay with ``commit_every=0``, keeping each chunk's fold
    time and each commit's ``CommitInfo``.

    ``replay`` builds its ``StateStore`` itself and shows no commit, so this benchmark process
    puts a recording subclass in its place; nothing else of replay changes.
    """
    import patternflow.replay as replay_module
    from patternflow.engine.state import StateStore

    recording = Recording()

    class RecordingStateStore(StateStore):
        def commit(self, *args, **kwargs) -> int:
            version = super().commit(*args, **kwargs)
            info = self.last_commit
            recording.commits.append({"kind": info.kind, "table_bytes": info.table_bytes, "bytes_written": info.bytes_written})
            return version

    replay_module.StateStore = RecordingStateStore
    summary = replay_module.replay(
        transactions, importance, out, state_dir=state, commit_every=0, on_chunk=lambda r, _: recording.fold_seconds.append(r.seconds)
    )
    recording.seconds = summary.seconds
    Path(result).write_text(json.dumps(asdict(recording)))


def recorded_replay(data: Data, work: Path) -> tuple[Recording, Measured, list[str]]:
    """``record_replay`` in a child process of its own: its figures, wall time and peak RSS, and
    the equivalent ``patternflow replay`` command."""
    out, state, result = work / "recorded-out", work / "recorded-state", work / "recorded.json"
    args = [str(data.transactions), str(data.importance), str(out), str(state), str(result)]
    measured = run_measured([sys.executable, "-m", "tests.benchmarks.bench_scale", "--record", *args])
    recording = Recording(**json.loads(result.read_text()))
    return recording, measured, replay_command(data, out, state, "--commit-every", "0")


# -- killed and resumed -------------------------------------------------------------------------


@dataclass(frozen=True)
class Resumed:
    killed_at: int
    """Chunks committed when the replay was killed."""
    identical: bool
    detail: str
    command: list[str]


def killed_and_resumed(data: Data, work: Path, uninterrupted: Path) -> Resumed:
    """``patternflow replay --commit-every 0`` killed with SIGKILL once its ``CURRENT`` counts half
    the chunks folded, run again to its end, and its files compared with ``uninterrupted``'s."""
    out, state = work / "killed-out", work / "killed-state"
    command = replay_command(data, out, state, "--commit-every", "0")
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and chunks_folded(state) < data.chunks // 2:
        time.sleep(0.01)
    if process.poll() is not None:
        return Resumed(data.chunks, False, f"the replay ended (code {process.returncode}) before it could be killed", command)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = chunks_folded(state)
    subprocess.run(command, cwd=PROJECT, check=True, stdout=subprocess.DEVNULL)
    differences = compare_files(out, uninterrupted)
    return Resumed(killed_at, not differences, "; ".join(differences[:5]), command)


def chunks_folded(state: Path) -> int:
    """What the state's ``CURRENT`` says has been folded (0 before the first commit)."""
    try:
        return json.loads((state / "CURRENT").read_text())["chunks_folded"]
    except (FileNotFoundError, ValueError, KeyError):  # not yet written, or read mid-replace
        return 0


def detection_rows(folder: Path) -> dict[str, list[list[str]]]:
    """Each detection file's rows without YStartTime and detectionTime, which record when."""
    return {path.name: [row[2:] for row in csv.reader(path.read_text().splitlines())] for path in sorted(folder.glob("detection_*.csv"))}


def compare_files(ours: Path, theirs: Path) -> list[str]:
    a, b = detection_rows(ours), detection_rows(theirs)
    differences = [f"{name}: only in {'the resumed' if name in a else 'the uninterrupted'} replay" for name in sorted(a.keys() ^ b.keys())]
    return differences + [f"{name}: rows differ" for name in sorted(a.keys() & b.keys()) if a[name] != b[name]]


# -- one scale ----------------------------------------------------------------------------------


@dataclass
class ScaleFigures:
    scale: int
    data: Data
    plain: Measured
    plain_command: list[str]
    recording: Recording
    recorded: Measured
    recorded_command: list[str]
    resumed: Resumed | None = None
    detections: int = 0

    @property
    def fold_median(self) -> float:
        return statistics.median(self.recording.fold_seconds)

    @property
    def seconds_per_million_rows(self) -> float:
        return self.plain.seconds / (self.data.rows / 1e6)

    def commit_bytes(self, kind: str | None = None) -> list[int]:
        return [c["bytes_written"] for c in self.recording.commits if kind is None or c["kind"] == kind]


def measure(scale: int, work: Path, kill: bool = True) -> ScaleFigures:
    """One scale's runs: a plain ``patternflow replay --state`` (wall, RSS), the recorded replay
    with every chunk committed (folds, commits), and the killed one compared with it."""
    data = bench_data(banksim.ROWS * scale)
    work = work / f"x{scale}"
    print(f"-- measuring {scale}x ({data.chunks:,} chunks) ...", file=sys.stderr, flush=True)
    plain_command = replay_command(data, work / "plain-out", work / "plain-state")
    plain = run_measured(plain_command)
    recording, recorded, recorded_command = recorded_replay(data, work)
    figures = ScaleFigures(scale, data, plain, plain_command, recording, recorded, recorded_command)
    figures.detections = sum(len(rows) - 1 for rows in detection_rows(work / "recorded-out").values())
    if kill:
        figures.resumed = killed_and_resumed(data, work, work / "recorded-out")
    return figures


# -- printing -----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def ratio(value: float, base: float) -> str:
    return f"x{value / base:.2f}"


def print_scale(figures: ScaleFigures, first: ScaleFigures, near: ScaleFigures | None) -> None:
    """One scale's figures; ``first`` is 1x at the start, ``near`` 1x measured again right after."""
    f, data = figures, figures.data
    made = "reused" if data.made_in is None else f"generated in {data.made_in:.0f} s"
    print(f"\n== {f.scale}x: {data.rows:,} rows, {data.chunks:,} chunks, {f.detections:,} detections (data {made})")
    print(f"  plain replay:    {shown(f.plain_command)}")
    print(f"  recorded replay: {shown(f.recorded_command)}  (in-process, every fold and commit recorded)")
    base = near or first
    fold_ratio = f.fold_median / base.fold_median
    folds = sorted(f.recording.fold_seconds)
    print(
        f"  fold a chunk: median {f.fold_median * 1e3:.2f} ms, p95 {folds[int(0.95 * (len(folds) - 1))] * 1e3:.2f} ms"
        f"   1x: {first.fold_median * 1e3:.2f} ms at the start ({ratio(f.fold_median, first.fold_median)})"
        + (f", {near.fold_median * 1e3:.2f} ms just after ({ratio(f.fold_median, near.fold_median)})" if near else "")
    )
    if f.scale == 100:
        print(f"    target median <= {FOLD_RATIO_AT_100X} x 1x: x{fold_ratio:.2f} {verdict(fold_ratio <= FOLD_RATIO_AT_100X)}")
    rss_mb = f.plain.peak_rss / 1e6
    limit = RSS_LIMITS_MB.get(f.scale)
    target = f"   target <= {limit} MB: {verdict(rss_mb <= limit)}" if limit else ""
    print(f"  peak RSS: plain replay {rss_mb:,.0f} MB{target}; recorded replay {f.recorded.peak_rss / 1e6:,.0f} MB")
    print_commits(f, first)
    wall = f.seconds_per_million_rows
    print(
        f"  wall: {f.plain.seconds:.1f} s, {wall:.2f} s per million rows   1x: {first.seconds_per_million_rows:.2f} s at the start "
        f"({ratio(wall, first.seconds_per_million_rows)})"
        + (f", {near.seconds_per_million_rows:.2f} s just after ({ratio(wall, near.seconds_per_million_rows)})" if near else "")
        + f"; recorded replay (a commit a chunk) {f.recorded.seconds:.1f} s"
    )
    if f.resumed:
        r = f.resumed
        outcome = "identical files" if r.identical else f"DIFFERENT files: {r.detail}"
        print(f"  killed at {r.killed_at:,} of {data.chunks:,} chunks committed, resumed: {outcome}   {verdict(r.identical)}")


def print_commits(f: ScaleFigures, first: ScaleFigures) -> None:
    every = f.commit_bytes()
    if not every:
        print("  commits: none recorded (replay no longer builds its StateStore where this benchmark can see it)")
        return
    mean, median = statistics.mean(every), statistics.median(every)
    by_kind = {kind: sizes for kind in ("snapshot", "delta") if (sizes := f.commit_bytes(kind))}
    split = ", ".join(f"{len(sizes)} {kind}s of {statistics.mean(sizes) / MiB:.3f} MiB mean" for kind, sizes in by_kind.items())
    base_mean, base_median = statistics.mean(first.commit_bytes()), statistics.median(first.commit_bytes())
    print(
        f"  bytes a commit (a chunk a commit): mean {mean / MiB:.3f} MiB ({ratio(mean, base_mean)} of 1x), "
        f"median {median / MiB:.3f} MiB ({ratio(median, base_median)}); {split}; {sum(every) / MiB:,.0f} MiB in all"
    )
    if f.scale == 10:
        grown = mean / base_mean
        print(f"    target mean <= {COMMIT_BYTES_RATIO_AT_10X} x 1x: x{grown:.2f} {verdict(grown <= COMMIT_BYTES_RATIO_AT_10X)}")


# -- main -----------------------------------------------------------------------------------------


def scales_argument(text: str) -> list[int]:
    scales = sorted({int(part) for part in text.split(",") if part.strip()})
    if not scales or min(scales) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of whole multiples of BankSim, e.g. 1,10,100")
    return scales


@contextmanager
def work_folder() -> Iterator[Path]:
    """Replay outputs and states, beside the data (the 100x state is large), removed at the end."""
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="work-", dir=DATA) as work:
        yield Path(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=scales_argument, default=[1, 10, 100], help="multiples of BankSim (default 1,10,100)")
    parser.add_argument("--record", nargs=5, metavar="PATH", help=argparse.SUPPRESS)  # the child of recorded_replay
    args = parser.parse_args()
    if args.record:
        record_replay(*args.record)
        return
    sys.stdout.reconfigure(line_buffering=True)  # each scale's figures as soon as they are measured, even into a pipe
    print(f"make bench-scale SCALES={','.join(map(str, args.scales))}   ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores)")
    with work_folder() as work:
        first = measure(1, work / "start", kill=1 in args.scales)
        for scale in args.scales:
            if scale == 1:
                print_scale(first, first, None)
                continue
            figures = measure(scale, work)
            near = measure(1, work / f"after-{scale}", kill=False)
            print_scale(figures, first, near)


if __name__ == "__main__":
    main()
