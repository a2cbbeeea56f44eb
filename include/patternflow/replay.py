"""Run a whole transactions file through the engine, locally: ``patternflow replay``.

It cuts the file into chunks exactly as the producer does, folds them in order and writes the
detection files to a folder exactly as the pipeline writes them to S3. With a state folder the
state is committed after every chunk (files first, then state), so a replay that is killed and
run again with the same arguments resumes and ends with identical files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from patternflow.engine.clock import Clock, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import FOLDED_COLUMNS, PATTERNS, WEIGHT_COLUMNS, ChunkResult
from patternflow.engine.detections import DETECTION_FILE
from patternflow.engine.state import SNAPSHOT_BYTES, SNAPSHOT_EVERY, StateStore
from patternflow.engine.store import LocalStore
from patternflow.engine.stream import commit, open_engine, write_files
from patternflow.errors import InputError, Problem
from patternflow.ingest.chunking import ChunkedFile, file_reader
from patternflow.ingest.parsing import parse_transactions, read_importance_batches


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
) -> ReplaySummary:
    """Replay the stream from the last committed state (or the start) to its end.

    With a state folder the state is committed at most every ``commit_every`` seconds (0: after
    every chunk) and always at the end: a crash replays at most that much work. A commit writes
    what changed since the last one, and the whole state every ``snapshot_every`` commits or once
    the changes since the last whole one pass ``snapshot_bytes`` (``patternflow.engine.state``).
    """
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
