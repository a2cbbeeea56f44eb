"""Run a whole transactions file through the engine, locally: ``patternflow replay``.

It cuts the file into chunks exactly as the producer does, folds them in order and writes the
detection files to a folder exactly as the pipeline writes them to S3. With a state folder the
state is committed after every chunk (files first, then state), so a replay that is killed and
run again with the same arguments resumes and ends with identical files.

With ``partitions`` N > 1 it runs the engine the pipeline maps over N merchant partitions
(``patternflow.engine.partitions``): N partition engines spread over ``jobs`` worker processes,
each reading and parsing every chunk itself by its byte range and folding its partitions' rows,
and this process merging each chunk's detections in the contract's order and cutting the files,
so that replay and pipeline write the same files for every N.

Exactly once with partitions, without staging any detections: at a commit point every worker
has folded exactly the chunks merged so far (no chunk is handed out past it until the commit is
done); the stream's state (rows waiting for a file, the next file's number, chunks merged) is
committed first, after the files it counts, and only then the partitions'. No partition is ever
committed ahead of the stream, so on resume each partition starts from its own committed chunk,
folds again the chunks it lacks up to the stream's (their detections are already in the files
or the rows waiting, and are dropped) and the merge goes on from the stream's chunk. When the
stream's newest state is damaged and its load falls back to an earlier version, each partition
resumes from its own newest version at or before that one. Workers die with the replay (Linux),
so none commits after a SIGKILL of it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Protocol

import pyarrow as pa

from patternflow.engine.clock import Clock, iso_ist, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import FOLDED_COLUMNS, PATTERNS, WEIGHT_COLUMNS, ChunkResult
from patternflow.engine.detections import DETECTION_FILE, Detection
from patternflow.engine.partitions import StreamFiles, fold_partitions, open_partitions
from patternflow.engine.state import SNAPSHOT_BYTES, SNAPSHOT_EVERY, StateError, StateStore
from patternflow.engine.store import LocalStore
from patternflow.engine.stream import commit, open_engine, write_files
from patternflow.errors import InputError, Problem
from patternflow.ingest.chunking import ChunkedFile, assemble, file_reader
from patternflow.ingest.parsing import parse_transactions, read_importance_batches

PARTITIONING = "partitioning.json"
"""In a state folder: the partitions its replay started with (absent for one engine)."""
_WINDOW = 8
"""Chunks handed to the workers ahead of the merge, so that none waits for the next one."""
_PR_SET_PDEATHSIG = 1


@dataclass
class ReplaySummary:
    chunks: int = 0
    rows: int = 0
    first_chunk: int = 0
    detections_by_pattern: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def detections(self) -> int:
        return sum(self.detections_by_pattern.values())


def replay(
    transactions: str | Path,
    importance: str | Path,
    out: str | Path,
    config: DetectionConfig | None = None,
    state_dir: str | Path | None = None,
    clock: Clock = now_ist,
    on_chunk: Callable[[ChunkResult, int], None] | None = None,
    commit_every: float = 1.0,
    snapshot_every: int = SNAPSHOT_EVERY,
    snapshot_bytes: int = SNAPSHOT_BYTES,
    partitions: int = 1,
    jobs: int | None = None,
) -> ReplaySummary:
    """Replay the stream from the last committed state (or the start) to its end.

    With a state folder the state is committed at most every ``commit_every`` seconds (0: after
    every chunk) and always at the end: a crash replays at most that much work. A commit writes
    what changed since the last one, and the whole state every ``snapshot_every`` commits or once
    the changes since the last whole one pass ``snapshot_bytes`` (``patternflow.engine.state``).

    ``partitions`` > 1: over that many merchant partitions, in ``jobs`` worker processes (default:
    the cores, at most one a partition; 1 folds them all in this process); ``clock`` must then
    pickle (a module's function) to reach the workers.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    if state_dir is not None:
        check_partitions(state_dir, partitions)
    if partitions > 1:
        run = _PartitionedRun(partitions, jobs, commit_every, snapshot_every, snapshot_bytes, clock)
        return run.replay(transactions, importance, out, config or DetectionConfig(), state_dir, on_chunk)
    started = time.perf_counter()
    config = config or DetectionConfig()
    state = (
        StateStore(LocalStore(state_dir), snapshot_every=snapshot_every, snapshot_bytes=snapshot_bytes) if state_dir is not None else None
    )
    outputs = LocalStore(out)
    Path(out).mkdir(parents=True, exist_ok=True)
    source = ChunkedFile.scan(file_reader(transactions), Path(transactions).stat().st_size, config.chunk_size)
    parse_transactions(source.header, str(transactions))  # an empty file or a wrong header, even with no rows
    engine = open_engine(state, lambda: read_importance_batches(importance, columns=WEIGHT_COLUMNS), config, clock)

    summary = ReplaySummary(first_chunk=engine.chunks_folded)
    if not engine.chunks_folded:  # a new stream: no file of an earlier replay into the same folder may stay beside its own
        outputs.delete([path.name for path in Path(out).glob("detection_*.csv") if DETECTION_FILE.fullmatch(path.name)])
    last_commit = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as parser:
        # Chunk i + 1 is parsed on a second thread while chunk i is folded (pyarrow and DuckDB
        # release the GIL); a parse error still surfaces only when its chunk's turn comes.
        # A chunk's processing, and so its detections' YStartTime, begins when its parse does.
        def parse(index: int) -> tuple[Future[pa.Table], datetime]:
            chunk = source.chunk(index)
            began = clock()
            return parser.submit(_parse_chunk, chunk.data, chunk.rows, str(transactions), index * config.chunk_size), began

        chunks = range(engine.chunks_folded, source.chunks)
        parsed = parse(chunks[0]) if chunks else None
        for index in chunks:
            pending, began = parsed
            table = pending.result()
            parsed = parse(index + 1) if index + 1 < source.chunks else None
            result = engine.fold(index, table, began=began)
            summary.files += write_files(outputs, "", result.files)
            if time.monotonic() - last_commit >= commit_every:
                commit(state, engine)
                last_commit = time.monotonic()
            summary.chunks += 1
            summary.rows += result.rows
            for pattern, n in result.new_detections.items():
                summary.detections_by_pattern[pattern] += n
            if on_chunk:
                on_chunk(result, source.chunks)
    if not engine.finished:
        summary.files += write_files(outputs, "", engine.finish())
    commit(state, engine)
    engine.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _parse_chunk(data: bytes, rows: int, source: str, rows_before: int) -> pa.Table:
    """Parse one chunk of ``source`` (``rows`` lines after its header), reporting problems at
    their line in the whole file."""
    try:
        # two_threads=False: it already runs beside the folds
        return parse_transactions(data, source, two_threads=False, columns=FOLDED_COLUMNS, expected_rows=rows)
    except InputError as exc:
        shifted = [Problem(p.line + rows_before if p.line > 1 else p.line, p.field, p.message) for p in exc.problems]
        raise InputError(source, shifted) from None


def check_partitions(state_dir: str | Path, partitions: int) -> None:
    """A state folder resumes only under the partitions it started with: a partitioned replay
    records them before its first commit (``record_partitions``); a folder with a state and no
    record is one engine's."""
    folder = Path(state_dir)
    try:
        recorded = json.loads((folder / PARTITIONING).read_text())["partitions"]
    except FileNotFoundError:
        recorded = 1 if (folder / "CURRENT").exists() else partitions
    if recorded != partitions:
        raise StateError(
            f"the state in {state_dir} was started with --partitions {recorded}, not {partitions}: a replay resumes only "
            f"with the partitions it started with; run it again with --partitions {recorded}, or give another --state "
            "folder to start over"
        )


def partition_folder(state_dir: str | Path, partition: int) -> Path:
    """Where a partitioned replay keeps partition ``partition``'s state: the stream's is the folder itself."""
    return Path(state_dir) / "partitions" / str(partition)


def record_partitions(state_dir: str | Path, partitions: int) -> None:
    """Record a partitioned replay's partitions in its state folder, once, before anything is committed there."""
    if not (Path(state_dir) / PARTITIONING).exists():
        LocalStore(state_dir).put(PARTITIONING, json.dumps({"partitions": partitions}).encode())


@dataclass(frozen=True)
class _Source:
    """What a worker needs to read any chunk by its byte range, without scanning the file again."""

    path: str
    header: bytes
    offsets: tuple[int, ...]
    """Where each chunk's rows start, then where the last one ends (``ChunkedFile.offsets``)."""
    rows: int
    size: int

    @classmethod
    def of(cls, path: str | Path, chunked: ChunkedFile) -> _Source:
        return cls(str(path), chunked.header, tuple(chunked.offsets()), chunked.rows, chunked.size)

    @property
    def chunks(self) -> int:
        return len(self.offsets) - 1

    def chunk_rows(self, index: int) -> int:
        return min((index + 1) * self.size, self.rows) - index * self.size

    def parse(self, index: int) -> pa.Table:
        """Chunk ``index`` read by its range and parsed, its problems at their line in the file."""
        data = assemble(self.header, file_reader(self.path)(self.offsets[index], self.offsets[index + 1]))
        return _parse_chunk(data, self.chunk_rows(index), self.path, index * self.size)


@dataclass(frozen=True)
class _FolderSpec:
    """One worker's share: its partitions of the stream and where everything is."""

    source: _Source
    importance: str
    config: DetectionConfig
    partitions: int
    mine: tuple[int, ...]
    state_dir: str | None
    snapshot_every: int
    snapshot_bytes: int
    clock: Clock
    resume_at: int
    """The stream's position: a partition committed ahead of it (the stream's state fell back to
    an earlier version) resumes from its own version at or before it."""


@dataclass(frozen=True)
class _Folded:
    """One worker's part of one chunk: when its processing began there, and each of the worker's
    partitions' new detections (in the contract's order)."""

    index: int
    began: str
    detections: tuple[tuple[Detection, ...], ...]


class _PartitionFolder:
    """The engines of some partitions in one process: each chunk is read and parsed once (the
    next one on a second thread while this one is folded) and folded by each engine."""

    def __init__(self, spec: _FolderSpec) -> None:
        self.spec = spec
        # A store rooted at each partition's own folder: a folder's listing walks all of it, and the
        # other workers prune their partitions' versions meanwhile.
        self.states = [
            StateStore(
                LocalStore(partition_folder(spec.state_dir, k)), snapshot_every=spec.snapshot_every, snapshot_bytes=spec.snapshot_bytes
            )
            if spec.state_dir is not None
            else None
            for k in spec.mine
        ]
        self.engines = open_partitions(
            self.states, self._importance, spec.config, spec.mine, spec.partitions, spec.clock, at_most_chunks=spec.resume_at
        )
        self.parser = ThreadPoolExecutor(max_workers=1)
        self.parsed: dict[int, tuple[Future[pa.Table], datetime]] = {}

    def _importance(self) -> Iterator[pa.Table]:
        return read_importance_batches(self.spec.importance, columns=WEIGHT_COLUMNS)

    def fold(self, index: int) -> _Folded:
        """Chunk ``index`` folded by every engine; an engine committed behind it first folds again
        the chunks it lacks, whose detections the stream has already."""
        ahead = [engine.partition for engine in self.engines if engine.chunks_folded > index]
        if ahead:
            raise StateError(f"partition(s) {ahead} in {self.spec.state_dir} have folded chunk {index}, which the stream's state has not")
        for chunk in range(min(engine.chunks_folded for engine in self.engines), index + 1):
            table, began = self._parsed(chunk)
            results = fold_partitions([e for e in self.engines if e.chunks_folded == chunk], chunk, table, began)
        return _Folded(index, iso_ist(began), tuple(result.detections for result in results))

    def _parsed(self, index: int) -> tuple[pa.Table, datetime]:
        pending, began = self.parsed.pop(index, None) or self._submit(index)
        following = index + 1
        if following < self.spec.source.chunks and following not in self.parsed:
            self.parsed[following] = self._submit(following)
        return pending.result(), began

    def _submit(self, index: int) -> tuple[Future[pa.Table], datetime]:
        began = self.spec.clock()  # the chunk's processing, and its detections' YStartTime, begins with its read
        return self.parser.submit(self.spec.source.parse, index), began

    def commit(self) -> None:
        for engine, state in zip(self.engines, self.states, strict=True):
            if state is not None:
                state.commit(engine, self.spec.config)

    def close(self) -> None:
        self.parser.shutdown(wait=True, cancel_futures=True)
        for engine in self.engines:
            engine.close()
        self.engines = []


class _Folders(Protocol):
    """The partition engines as the merge drives them: chunks handed out in order, taken back in
    order, commits between them."""

    def send(self, index: int) -> None: ...

    def take(self, index: int) -> list[_Folded]: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class _InProcess:
    """All partitions in this process (one job)."""

    def __init__(self, spec: _FolderSpec) -> None:
        self.folder = _PartitionFolder(spec)
        self.sent: deque[int] = deque()

    def send(self, index: int) -> None:
        self.sent.append(index)

    def take(self, index: int) -> list[_Folded]:
        if self.sent.popleft() != index:
            raise RuntimeError(f"chunk {index} taken out of order")
        return [self.folder.fold(index)]

    def commit(self) -> None:
        self.folder.commit()

    def close(self) -> None:
        self.folder.close()

    def abort(self) -> None:
        self.folder.close()


@dataclass(frozen=True)
class _Failure:
    """A worker's exception, in a form that crosses the pipe (``InputError`` does not pickle)."""

    error: BaseException | None
    input_error: tuple[str, list[Problem]] | None
    text: str

    @classmethod
    def of(cls, exc: BaseException) -> _Failure:
        text = "".join(traceback.format_exception(exc))
        if isinstance(exc, InputError):
            return cls(None, (exc.source, exc.problems), text)
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            return cls(None, None, text)
        return cls(exc, None, text)

    def rebuilt(self, where: str) -> BaseException:
        if self.input_error is not None:
            return InputError(*self.input_error)
        if self.error is None:
            return RuntimeError(f"{where} failed:\n{self.text}")
        self.error.add_note(f"in {where}:\n{self.text}")  # shown with the traceback of an unexpected error
        return self.error


def _serve(conn: Connection, spec: _FolderSpec, parent: int) -> None:
    """A worker process: opens its partitions, then folds, commits and closes as told."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the replay's to handle: it ends its workers
    folder = None
    try:
        folder = _PartitionFolder(spec)
        conn.send(("ready", None))
        while (message := conn.recv())[0] != "close":
            command, index = message
            if command == "fold":
                conn.send(("folded", folder.fold(index)))
            else:
                folder.commit()
        folder.close()
        folder = None
        conn.send(("closed", None))
    except EOFError:  # the replay has gone
        pass
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the replay may have gone
            conn.send(("failed", _Failure.of(exc)))
    finally:
        if folder is not None:
            folder.close()


def _die_with_parent(parent: int) -> None:
    """A worker ends when the replay does, however it ends: one left folding after a SIGKILL of
    the replay could commit a partition while the replay run again uses the same state."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)


class _WorkerProcesses:
    """The partitions spread over worker processes, one pipe each; every worker gets every chunk."""

    def __init__(self, specs: list[_FolderSpec]) -> None:
        # spawn, not fork: this process may hold threads (the progress bar's) and locks a fork would copy
        context = multiprocessing.get_context("spawn")
        self.workers: list[tuple[_FolderSpec, Connection, BaseProcess]] = []
        try:
            for spec in specs:
                mine, theirs = context.Pipe()
                process = context.Process(
                    target=_serve, args=(theirs, spec, os.getpid()), name=f"patternflow-replay-{spec.mine}", daemon=True
                )
                process.start()
                theirs.close()
                self.workers.append((spec, mine, process))
            for worker in self.workers:
                self._receive(worker, "ready")
        except BaseException:
            self.abort()
            raise

    def send(self, index: int) -> None:
        for _, conn, _ in self.workers:
            conn.send(("fold", index))

    def take(self, index: int) -> list[_Folded]:
        folded = [self._receive(worker, "folded") for worker in self.workers]
        if any(part.index != index for part in folded):
            raise RuntimeError(f"expected chunk {index} from every worker, got {[part.index for part in folded]}")
        return folded

    def commit(self) -> None:
        for _, conn, _ in self.workers:
            conn.send(("commit", None))

    def close(self) -> None:
        for _, conn, _ in self.workers:
            conn.send(("close", None))
        for worker in self.workers:
            self._receive(worker, "closed")
            worker[2].join()
            worker[1].close()

    def abort(self) -> None:
        for _, conn, process in self.workers:
            if process.is_alive():
                process.kill()
            process.join()
            conn.close()

    def _receive(self, worker: tuple[_FolderSpec, Connection, BaseProcess], expected: str) -> object:
        spec, conn, process = worker
        try:
            kind, payload = conn.recv()
        except EOFError:
            process.join()
            raise RuntimeError(f"the replay worker of partitions {list(spec.mine)} ended (exit code {process.exitcode})") from None
        if kind == "failed":
            raise payload.rebuilt(f"the replay worker of partitions {list(spec.mine)}")
        if kind != expected:
            raise RuntimeError(f"a replay worker answered {kind!r}, expected {expected!r}")
        return payload


class _OpenFolders:
    """``with``: the folders of a run, ended at once (workers killed) if the run fails."""

    def __init__(self, folders: _Folders) -> None:
        self.folders = folders

    def __enter__(self) -> _Folders:
        return self.folders

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if error is not None:
            self.folders.abort()


@dataclass
class _PartitionedRun:
    """One replay over merchant partitions (see the module's docstring for the commit order)."""

    partitions: int
    jobs: int | None
    commit_every: float
    snapshot_every: int
    snapshot_bytes: int
    clock: Clock

    def replay(
        self,
        transactions: str | Path,
        importance: str | Path,
        out: str | Path,
        config: DetectionConfig,
        state_dir: str | Path | None,
        on_chunk: Callable[[ChunkResult, int], None] | None,
    ) -> ReplaySummary:
        started = time.perf_counter()
        outputs = LocalStore(out)
        Path(out).mkdir(parents=True, exist_ok=True)
        chunked = ChunkedFile.scan(file_reader(transactions), Path(transactions).stat().st_size, config.chunk_size)
        parse_transactions(chunked.header, str(transactions))  # an empty file or a wrong header, even with no rows
        source = _Source.of(transactions, chunked)
        state = None
        if state_dir is not None:
            record_partitions(state_dir, self.partitions)
            state = StateStore(LocalStore(state_dir), snapshot_every=self.snapshot_every, snapshot_bytes=self.snapshot_bytes)
        stream = StreamFiles.open(state, config)
        summary = ReplaySummary(first_chunk=stream.chunks_merged)
        if not stream.chunks_merged and not stream.finished:  # a new stream: no file of an earlier replay may stay
            outputs.delete([path.name for path in Path(out).glob("detection_*.csv") if DETECTION_FILE.fullmatch(path.name)])
        if not stream.finished:
            specs = self._specs(source, str(importance), config, state_dir, stream.chunks_merged)
            with _OpenFolders(_InProcess(specs[0]) if len(specs) == 1 else _WorkerProcesses(specs)) as folders:
                self._merge(folders, stream, state, source, outputs, summary, on_chunk)
                summary.files += write_files(outputs, "", stream.finish())
                if state is not None:
                    state.commit(stream.snapshot(), config)  # the stream first: no partition is ever committed ahead of it
                    folders.commit()
                folders.close()
        summary.seconds = time.perf_counter() - started
        return summary

    def _specs(
        self, source: _Source, importance: str, config: DetectionConfig, state_dir: str | Path | None, resume_at: int
    ) -> list[_FolderSpec]:
        """Partition k goes to worker k mod jobs."""
        jobs = max(1, min(self.jobs or os.cpu_count() or 1, self.partitions))
        folder = None if state_dir is None else str(state_dir)
        return [
            _FolderSpec(
                source,
                importance,
                config,
                self.partitions,
                tuple(range(worker, self.partitions, jobs)),
                folder,
                self.snapshot_every,
                self.snapshot_bytes,
                self.clock,
                resume_at,
            )
            for worker in range(jobs)
        ]

    def _merge(
        self,
        folders: _Folders,
        stream: StreamFiles,
        state: StateStore | None,
        source: _Source,
        outputs: LocalStore,
        summary: ReplaySummary,
        on_chunk: Callable[[ChunkResult, int], None] | None,
    ) -> None:
        """Every chunk from the stream's position to the end, merged in order. Up to ``_WINDOW``
        chunks are out with the workers; when a commit is due no further chunk is handed out,
        and once the merge has caught up the stream commits, then the partitions."""
        window = 1 if state is not None and self.commit_every <= 0 else _WINDOW
        sent = stream.chunks_merged
        boundary: int | None = None
        last_commit = last_chunk = time.monotonic()
        while stream.chunks_merged < source.chunks:
            while sent < min(source.chunks if boundary is None else boundary, stream.chunks_merged + window):
                folders.send(sent)
                sent += 1
            index = stream.chunks_merged
            rows = source.chunk_rows(index)
            files, counts = stream.add_chunk(index, rows, _same_start(folders.take(index)))
            summary.files += write_files(outputs, "", files)
            summary.chunks += 1
            summary.rows += rows
            for pattern, n in counts.items():
                summary.detections_by_pattern[pattern] = summary.detections_by_pattern.get(pattern, 0) + n
            if on_chunk:
                on_chunk(ChunkResult(index, rows, counts, files, time.monotonic() - last_chunk), source.chunks)
            last_chunk = time.monotonic()
            if state is None:
                continue
            if boundary is None and time.monotonic() - last_commit >= self.commit_every:
                boundary = sent
            if boundary == stream.chunks_merged < source.chunks:  # the last commit comes after the end's file
                # No worker is committing now: each finishes a commit before its next chunk, and
                # this one waited for those (the stream's store lists the partitions' folders too).
                state.commit(stream.snapshot(), stream.config)
                folders.commit()
                boundary, last_commit = None, time.monotonic()


def _same_start(folded: list[_Folded]) -> list[tuple[Detection, ...]]:
    """The workers' detections of one chunk, each with the chunk's YStartTime: when the first
    worker began processing it."""
    began = min(part.began for part in folded)
    return [
        tuple(row if row.y_start_time == began else replace(row, y_start_time=began) for row in detections)
        for part in folded
        for detections in part.detections
    ]
