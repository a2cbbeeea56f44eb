"""Mechanism Y over N merchant partitions: one ``detect_partition`` task each, then
``write_detection_files``.

- ``detect_partition(k)`` opens partition k's state (``state/partitions/<k>/``), takes the waiting
  chunks (as a one-engine run does, up to ``max_rows_per_run``), folds the rows of its merchants,
  stages the run's detections chunk by chunk with their YStartTime and detectionTime
  (``state/staged/partition_<k>/chunks_<first>_<last>.parquet``) and only then commits its state.
- ``write_detection_files`` merges, chunk by chunk up to the chunk every partition has committed,
  the partitions' staged detections in the contract's order, cuts and writes the 50-row files,
  commits the stream's own state (``state/CURRENT``: pending rows, next file number, chunks
  merged, counters; what the progress display and the sensor read) and then removes the staged
  objects no version of that state it may fall back to still needs.

Exactly once: a partition's staged rows are written before its commit and the merge reads only
chunks below every partition's committed position. Every run from the same committed state finds
the same detections for a chunk (the engine is deterministic), so any staged object that covers
a chunk, a dead or stalled run's included, holds its rows; the merge takes the newest one, and
gives every row of a chunk the earliest start among the partitions (one YStartTime a chunk, as
one engine gives). Files are written before the stream's commit, and a redone merge rewrites the
same rows under the same names. The partitions must have read the same bytes of a chunk: a chunk
uploaded again with other bytes while they read it stops the merge, naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pyarrow as pa

from patternflow.engine.clock import Clock, iso_ist, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detections import Detection, pending_rows, pending_table
from patternflow.engine.parquet import parquet_bytes, parquet_table
from patternflow.engine.partitions import PartitionEngine, StreamFiles
from patternflow.engine.state import StateStore
from patternflow.engine.store import ObjectStore
from patternflow.engine.stream import write_files
from patternflow.ingest import columns
from patternflow.pipeline.detector import (
    ChunkMetrics,
    DetectionReport,
    FoldedDigests,
    accept_chunk,
    check_partitioning,
    commit_run,
    find_conflicts,
    finish_moves,
    folded_chunks,
    list_final_files,
    may_take,
    stream_weights,
    summarise,
)
from patternflow.pipeline.layout import (
    PATTERNS,
    chunk_key,
    end_of_stream_key,
    partition_state_prefix,
    staged_key,
    staged_prefix,
    staged_range,
)
from patternflow.pipeline.producer import StreamError, load_manifest
from patternflow.pipeline.settings import PipelineSettings, SettingsError

log = logging.getLogger(__name__)

_CHUNKS_METADATA = b"patternflow.chunks"
"""The staged object's per-chunk records (rows, upload and processing times), in its schema metadata."""


@dataclass
class PartitionReport:
    """One partition task's result (its XCom): what it took, found and now holds."""

    partition: int
    chunks: list[int] = field(default_factory=list)
    rows: int = 0
    """Rows of this partition's merchants in the chunks taken."""
    new_detections: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    state_version: int | None = None
    state_bytes: int = 0
    """The committed state's objects, snapshot and deltas (what loading it reads)."""

    def to_json(self) -> dict:
        return asdict(self)


def partition_state(store: ObjectStore, settings: PipelineSettings, partition: int) -> StateStore:
    return StateStore(
        store,
        partition_state_prefix(settings, partition),
        snapshot_every=settings.state_snapshot_every,
        snapshot_bytes=settings.state_snapshot_bytes,
    )


def stream_state(store: ObjectStore, settings: PipelineSettings) -> StateStore:
    return StateStore(
        store, settings.state_prefix, snapshot_every=settings.state_snapshot_every, snapshot_bytes=settings.state_snapshot_bytes
    )


def detect_partition(
    store: ObjectStore,
    settings: PipelineSettings,
    partition: int,
    config: DetectionConfig | None = None,
    clock: Clock = now_ist,
    wall: Callable[[], float] = time.time,
) -> PartitionReport:
    """One run of partition ``partition`` over the chunks waiting on ``store``."""
    if not 0 <= partition < settings.partitions:
        raise SettingsError(f"partition {partition} is not one of partitions 0..{settings.partitions - 1}")
    report = PartitionReport(partition)
    manifest = load_manifest(store, settings)
    if manifest is None:
        log.info("no stream under %s yet", settings.chunks_prefix)
        return report
    check_partitioning(store, settings)
    config = DetectionConfig(**{**(config or DetectionConfig()).to_json(), "chunk_size": manifest.chunk_size})
    state = partition_state(store, settings, partition)
    engine = PartitionEngine.open(
        state,
        lambda: stream_weights(store, settings),
        config,
        partition,
        settings.partitions,
        clock,
    )
    try:
        first = engine.chunks_folded
        staged: list[pa.Table] = []
        records: list[dict] = []
        rows_taken = 0
        while engine.chunks_folded < manifest.chunks and may_take(settings, records, rows_taken, manifest.chunk_rows(engine.chunks_folded)):
            index = engine.chunks_folded
            began, started = clock(), wall()
            try:
                stored = store.fetch(chunk_key(settings, index))
            except KeyError:
                break
            rows_taken += manifest.chunk_rows(index)
            accepted = accept_chunk(store, settings, index, stored.data, manifest.chunk_rows(index))
            result = engine.fold(index, accepted.table, began=began)
            staged.append(_staged_rows(index, result.detections))
            records.append(
                {
                    "index": index,
                    "rows": accepted.table.num_rows,
                    "rows_set_aside": accepted.rows_set_aside,
                    "quarantined": accepted.quarantined,
                    "uploaded_at": stored.written_at,
                    "began": iso_ist(began),
                    "md5": hashlib.md5(stored.data).hexdigest(),
                    "etag": stored.tag.strip('"'),
                    "started_at": started,
                    "finished_at": wall(),
                }
            )
            report.chunks.append(index)
            report.rows += result.rows
            for pattern, n in result.new_detections.items():
                report.new_detections[pattern] += n
        if records:
            table = pa.concat_tables(staged).replace_schema_metadata({_CHUNKS_METADATA: json.dumps(records).encode()})
            key = staged_key(settings, partition, first, engine.chunks_folded - 1)
            store.put(key, parquet_bytes(table))  # before the commit that counts it
            report.state_version = state.commit(engine, config)
            report.state_bytes = state.last_commit.chain_bytes
    finally:
        engine.close()
    log.info(
        "partition %s: chunks %s, %s rows of its merchants, new detections %s",
        partition,
        report.chunks,
        f"{report.rows:,}",
        report.new_detections,
    )
    return report


def write_detection_files(
    store: ObjectStore,
    settings: PipelineSettings,
    config: DetectionConfig | None = None,
    wall: Callable[[], float] = time.time,
) -> DetectionReport:
    """Merge every chunk that all partitions have committed into the detection files."""
    report = DetectionReport()
    manifest = load_manifest(store, settings)
    if manifest is None:
        return report
    check_partitioning(store, settings)
    config = DetectionConfig(**{**(config or DetectionConfig()).to_json(), "chunk_size": manifest.chunk_size})
    state = stream_state(store, settings)
    stream = StreamFiles.open(state, config)
    folded_digests = FoldedDigests.load(store, settings)
    uploaded = folded_chunks(settings, store.digests(settings.chunks_prefix), stream.chunks_merged)
    report.conflicts = find_conflicts(store, settings, folded_digests, uploaded)
    finish_moves(store, settings, folded_digests, uploaded)
    if stream.finished:
        report.end_of_stream = True
        return report
    committed = [_committed_chunks(store, settings, k) for k in range(settings.partitions)]
    ready = min(committed)
    staged = [_read_staged(store, settings, k, stream.chunks_merged, ready) for k in range(settings.partitions)]
    metrics: list[ChunkMetrics] = []
    moved: list[str] = []
    for index in range(stream.chunks_merged, ready):
        records = [by_chunk[index][1] for by_chunk in staged]
        _check_same_bytes(settings, index, records)
        began = min(r["began"] for r in records)  # the chunk's processing began with its first partition
        detections = [[replace(row, y_start_time=began) for row in by_chunk[index][0]] for by_chunk in staged]
        record = records[0]
        files, counts = stream.add_chunk(index, record["rows"], detections)
        names = write_files(store, settings.output_prefix, files)
        started, finished = min(r["started_at"] for r in records), max(r["finished_at"] for r in records)
        metrics.append(
            ChunkMetrics(index, record["rows"], record["uploaded_at"], started, finished, counts, names, record["rows_set_aside"])
        )
        folded_digests.md5[str(index)], folded_digests.etag[str(index)] = record["md5"], record["etag"]
        if record["quarantined"]:
            moved.append(chunk_key(settings, index))
            folded_digests.quarantined.append(index)
    unlisted: list[str] = []
    if stream.chunks_merged == manifest.chunks and store.exists(end_of_stream_key(settings)):
        unlisted = list_final_files(store, settings, metrics, write_files(store, settings.output_prefix, stream.finish()))
        report.end_of_stream = True
    if metrics or report.end_of_stream:
        report.state_version = commit_run(
            store, settings, folded_digests, metrics, moved, lambda: state.commit(stream.snapshot(), config), wall
        )
        _remove_staged_before(store, settings, state.last_commit.fewest_chunks_kept)
    summarise(report, metrics, unlisted)
    log.info("%s", report.describe())
    return report


def _committed_chunks(store: ObjectStore, settings: PipelineSettings, partition: int) -> int:
    """How many chunks partition ``partition`` has committed (0 before its first commit)."""
    try:
        return json.loads(store.get(f"{partition_state_prefix(settings, partition)}CURRENT"))["chunks_folded"]
    except (KeyError, ValueError):
        return 0


def _read_staged(
    store: ObjectStore, settings: PipelineSettings, partition: int, start: int, end: int
) -> dict[int, tuple[list[Detection], dict]]:
    """Partition ``partition``'s staged detections and records of chunks ``start`` to ``end - 1``,
    by chunk: of the staged objects covering a chunk, the newest run's (highest first chunk)."""
    found: dict[int, tuple[list[Detection], dict]] = {}
    if start >= end:
        return found
    ranges = sorted((staged_range(key), key) for key in store.list(staged_prefix(settings, partition)))
    for (first, last), key in reversed(ranges):
        if last < start or first >= end or all(i in found for i in range(max(first, start), min(last + 1, end))):
            continue
        table = parquet_table(store.get(key))
        by_chunk: dict[int, list[Detection]] = {}
        rows = pending_rows(table.drop_columns(["chunk"]).replace_schema_metadata(None))
        for row, chunk in zip(rows, columns.to_numpy(table.column("chunk")).tolist(), strict=True):
            by_chunk.setdefault(chunk, []).append(row)
        for record in json.loads(table.schema.metadata[_CHUNKS_METADATA]):
            if start <= record["index"] < end and record["index"] not in found:
                found[record["index"]] = (by_chunk.get(record["index"], []), record)
    missing = [i for i in range(start, end) if i not in found]
    if missing:
        raise RuntimeError(f"partition {partition} committed chunks up to {end - 1} but staged none of chunks {missing[:5]}")
    return found


def _remove_staged_before(store: ObjectStore, settings: PipelineSettings, chunk: int | None) -> None:
    """Remove the staged objects whose chunks all come before ``chunk``: the fewest chunks merged
    by any version the stream's state may fall back to (None: not known, nothing removed).
    A damaged stream version falls back to one that merged fewer chunks, and the merge must then
    find their detections again: the partitions have committed past them and will not restage them."""
    if chunk is None:
        return
    for partition in range(settings.partitions):
        done = [key for key in store.list(staged_prefix(settings, partition)) if staged_range(key)[1] < chunk]
        if done:
            store.delete(done)


def _check_same_bytes(settings: PipelineSettings, index: int, records: list[dict]) -> None:
    """Every partition folded the same bytes of chunk ``index``; else the files could not be
    one engine's (the chunk was uploaded again with other bytes while they read it)."""
    digests = {record["md5"] for record in records}
    if len(digests) > 1:
        raise StreamError(
            f"chunk {index} (s3://{settings.bucket}/{chunk_key(settings, index)}) was read with different bytes by the partitions "
            f"(md5 {', '.join(sorted(digests))}): it was uploaded again while they read it, and their detections cannot be merged "
            "exactly; reset the stream (patternflow reset, or the stream_reset DAG) to start it again"
        )


def _staged_rows(index: int, detections: tuple[Detection, ...]) -> pa.Table:
    rows = pending_table(list(detections))
    return rows.add_column(0, "chunk", columns.from_numpy(np.full(rows.num_rows, index, dtype=np.int32)))
