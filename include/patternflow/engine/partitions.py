"""Merchant partitions: the state split by merchant, so that N engines share a stream exactly.

Every pattern depends on one merchant's data only (its pairs' counts, amounts, genders and
weights, its quantiles, its clear-gender counts), so the engine over the rows of a set of
merchants finds exactly the detections the whole engine finds for those merchants. A merchant
belongs to partition ``crc32(utf-8 bytes of MerchantId) mod N``: CRC-32 as zlib computes it
(ISO-HDLC, the one of gzip and PNG), the same in every process, on every machine and in every
language, unlike Python's salted ``hash``.

A chunk's detections from the N partitions are merged back into the contract's order
(patternId, MerchantId, customerName) before they are cut into files, so the files are those of
one engine for any N.
"""

from __future__ import annotations

import heapq
import queue
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from patternflow.engine.clock import Clock, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import ChunkResult, DetectionEngine, EngineState, StateChanges, WeightRanks, initial_state
from patternflow.engine.detections import Detection, DetectionFile, cut_files, pending_rows, pending_table
from patternflow.engine.state import LoadedState, StateError, StateStore
from patternflow.engine.stream import check_same_config
from patternflow.ingest import columns

MERCHANT_COLUMNS = {"transactions": "merchant", "importance": "Target"}
"""The column that names a row's merchant, in a transactions chunk and in CustomerImportance."""


def partition_of(merchant: str, partitions: int) -> int:
    """The partition of one merchant: ``crc32(merchant.encode()) % partitions``."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return zlib.crc32(merchant.encode()) % partitions


def row_partitions(merchants: pa.ChunkedArray | pa.Array, partitions: int) -> np.ndarray:
    """Each row's partition, hashing each distinct merchant once (a chunk has few)."""
    encoded = pc.dictionary_encode(merchants.combine_chunks() if isinstance(merchants, pa.ChunkedArray) else merchants)
    of_name = np.array([partition_of(name, partitions) for name in encoded.dictionary.to_pylist()], dtype=np.int32)
    return of_name[encoded.indices.to_numpy(zero_copy_only=False)] if len(encoded) else np.empty(0, np.int32)


def rows_of(table: pa.Table, column: str, partition: int, partitions: int) -> pa.Table:
    """The rows of ``table`` whose merchant (in ``column``) belongs to ``partition``."""
    if partitions == 1:
        return table
    rows = np.flatnonzero(row_partitions(table.column(column), partitions) == partition).astype(np.int32)
    return table.take(columns.from_numpy(rows))  # not filter(pa.array(mask)): that imports pandas


def merged(detections: Iterable[Sequence[Detection]]) -> list[Detection]:
    """One chunk's detections from every partition, each already in the contract's order, as one
    list in that order (patternId, MerchantId, customerName)."""
    return list(heapq.merge(*detections, key=_contract_order))


def _contract_order(row: Detection) -> tuple[str, str, str]:
    return row.pattern_id, row.merchant, row.customer


class PartitionEngine:
    """The engine of one merchant partition: it folds only its merchants' rows (of each chunk and
    of CustomerImportance) and hands each chunk's detections on instead of cutting files."""

    def __init__(self, engine: DetectionEngine, partition: int, partitions: int) -> None:
        self.engine = engine
        self.partition = partition
        self.partitions = partitions

    @classmethod
    def open(
        cls,
        state: StateStore | None,
        load_importance: Callable[[], pa.Table | Iterable[pa.Table] | WeightRanks],
        config: DetectionConfig,
        partition: int,
        partitions: int,
        clock: Clock = now_ist,
    ) -> PartitionEngine:
        """Partition ``partition`` of ``partitions`` at its last committed state, or at the start."""
        loaded = state.load() if state is not None else None
        if loaded is None:
            importance = load_importance()
            if isinstance(importance, WeightRanks):
                mine: WeightRanks | Iterable[pa.Table] = WeightRanks(rows_of(importance.table, "merchant", partition, partitions))
            else:
                mine = (rows_of(batch, MERCHANT_COLUMNS["importance"], partition, partitions) for batch in _batches(importance))
            return cls(DetectionEngine(config, initial_state(mine), clock, cuts_files=False), partition, partitions)
        check_same_config(loaded.config, config)
        return cls(DetectionEngine(config, loaded.state, clock, cuts_files=False), partition, partitions)

    @property
    def chunks_folded(self) -> int:
        return self.engine.chunks_folded

    def fold(self, index: int, chunk: pa.Table, began: datetime | None = None) -> ChunkResult:
        """Fold this partition's rows of chunk ``index`` (``ChunkResult.rows`` counts just those)."""
        return self.engine.fold(index, rows_of(chunk, MERCHANT_COLUMNS["transactions"], self.partition, self.partitions), began)

    def fold_rows(self, index: int, rows: pa.Table, began: datetime | None = None) -> ChunkResult:
        """Fold chunk ``index`` given as this partition's rows of it already (``split_rows``)."""
        return self.engine.fold(index, rows, began)

    def snapshot(self) -> EngineState:
        return self.engine.snapshot()

    def changes(self) -> StateChanges | None:
        return self.engine.changes()

    def committed(self, commit_id: str | None) -> None:
        self.engine.committed(commit_id)

    def close(self) -> None:
        self.engine.close()


def split_rows(table: pa.Table, column: str, wanted: Sequence[int], partitions: int) -> dict[int, pa.Table]:
    """The rows of ``table`` of each partition in ``wanted``, as ``rows_of`` gives them, with the
    merchants hashed once for all of them rather than once a partition."""
    if partitions == 1:
        return dict.fromkeys(wanted, table)
    of_row = row_partitions(table.column(column), partitions)
    return {k: table.take(columns.from_numpy(np.flatnonzero(of_row == k).astype(np.int32))) for k in wanted}


def open_partitions(
    states: Sequence[StateStore | None],
    load_importance: Callable[[], pa.Table | Iterable[pa.Table]],
    config: DetectionConfig,
    wanted: Sequence[int],
    partitions: int,
    clock: Clock = now_ist,
    at_most_chunks: int | None = None,
) -> list[PartitionEngine]:
    """Several partitions of one stream in one process (``states[i]`` is partition ``wanted[i]``'s),
    each as ``PartitionEngine.open`` opens it, but with CustomerImportance read once for all of
    those that start rather than once each. ``at_most_chunks``: the stream's own position, which
    no partition may be ahead of (``StateStore.load``)."""
    loaded = [_load(state, k, at_most_chunks) for k, state in zip(wanted, states, strict=True)]
    for found in loaded:
        if found is not None:
            check_same_config(found.config, config)
    starting = [k for k, found in zip(wanted, loaded, strict=True) if found is None]
    initial = _initial_states(load_importance, starting, partitions) if starting else {}
    engines: list[PartitionEngine] = []
    try:
        for k, found in zip(wanted, loaded, strict=True):
            state = initial[k] if found is None else found.state
            engines.append(PartitionEngine(DetectionEngine(config, state, clock, cuts_files=False), k, partitions))
    except BaseException:
        for engine in engines:
            engine.close()
        raise
    return engines


def _load(state: StateStore | None, partition: int, at_most_chunks: int | None) -> LoadedState | None:
    if state is None:
        return None
    try:
        return state.load(at_most_chunks)
    except StateError as exc:
        raise StateError(f"partition {partition}: {exc}") from None


_END = object()
"""The end of a partition's CustomerImportance batches, in its queue (``_initial_states``)."""


def _initial_states(
    load_importance: Callable[[], pa.Table | Iterable[pa.Table]], starting: Sequence[int], partitions: int
) -> dict[int, EngineState]:
    """The initial state of each partition in ``starting`` from one pass over CustomerImportance:
    each batch is split once and each part handed to the partition's own thread, which sums them
    as ``initial_state`` does; a queue of one part each keeps memory at a few batches."""
    if len(starting) == 1:
        (k,) = starting
        return {k: initial_state(rows_of(batch, MERCHANT_COLUMNS["importance"], k, partitions) for batch in _batches(load_importance()))}
    queues: dict[int, queue.Queue] = {k: queue.Queue(maxsize=1) for k in starting}
    with ThreadPoolExecutor(max_workers=len(starting)) as pool:
        futures = {k: pool.submit(initial_state, _drained(queues[k])) for k in starting}
        try:
            for batch in _batches(load_importance()):
                for k, part in split_rows(batch, MERCHANT_COLUMNS["importance"], starting, partitions).items():
                    _hand_on(queues[k], part, futures[k])
        finally:
            for k in starting:
                _hand_on(queues[k], _END, futures[k])
        return {k: future.result() for k, future in futures.items()}


def _drained(parts: queue.Queue) -> Iterator[pa.Table]:
    while (part := parts.get()) is not _END:
        yield part


def _hand_on(parts: queue.Queue, part: object, consumer: Future) -> None:
    """Put ``part`` in the queue, unless its consumer has ended (its error comes with its result)."""
    while not consumer.done():
        try:
            parts.put(part, timeout=0.05)
            return
        except queue.Full:
            continue


def fold_partitions(engines: Sequence[PartitionEngine], index: int, chunk: pa.Table, began: datetime | None = None) -> list[ChunkResult]:
    """Chunk ``index`` folded by several partition engines of one stream (one process holding
    some of the partitions): the chunk is split once, each engine folds its own rows."""
    if not engines:
        return []
    partitions = engines[0].partitions
    if any(engine.partitions != partitions for engine in engines):
        raise ValueError("partition engines of different partitionings cannot share a chunk")
    mine = split_rows(chunk, MERCHANT_COLUMNS["transactions"], [engine.partition for engine in engines], partitions)
    return [engine.fold_rows(index, mine[engine.partition], began) for engine in engines]


class StreamFiles:
    """The stream's side of a partitioned engine: each chunk's detections from every partition,
    merged in the contract's order, cut into the 50-row files, and the counters of the stream.

    Its state is an ``EngineState`` without pairs (only pending rows and counters), committed with
    a ``StateStore`` like a partition's."""

    def __init__(self, config: DetectionConfig, state: EngineState) -> None:
        self.config = config
        self.state = state
        self.pending = pending_rows(state.pending)

    @classmethod
    def open(cls, state: StateStore | None, config: DetectionConfig) -> StreamFiles:
        loaded = state.load() if state is not None else None
        if loaded is None:
            return cls(config, _empty_state())
        check_same_config(loaded.config, config)
        return cls(config, loaded.state)

    @property
    def chunks_merged(self) -> int:
        return self.state.chunks_folded

    @property
    def finished(self) -> bool:
        return self.state.finished

    def add_chunk(self, index: int, rows: int, detections: Iterable[Sequence[Detection]]) -> tuple[list[DetectionFile], dict[str, int]]:
        """Chunk ``index``'s detections from every partition: the files now full, and the new
        detections per pattern."""
        if self.state.finished or index != self.state.chunks_folded:
            raise ValueError(f"expected chunk {self.state.chunks_folded} next, got chunk {index}")
        rows_of_chunk = merged(detections)
        counts = {pattern: 0 for pattern in self.state.detections_by_pattern}
        for row in rows_of_chunk:
            counts[row.pattern_id] = counts.get(row.pattern_id, 0) + 1
            self.state.detections_by_pattern[row.pattern_id] = self.state.detections_by_pattern.get(row.pattern_id, 0) + 1
        self.pending.extend(rows_of_chunk)
        self.state.detections += len(rows_of_chunk)
        self.state.chunks_folded += 1
        self.state.rows_folded += rows
        return self._cut(final=False), counts

    def finish(self) -> list[DetectionFile]:
        """End of stream: the rows still waiting go to one last file."""
        files = self._cut(final=True)
        self.state.finished = True
        return files

    def _cut(self, final: bool) -> list[DetectionFile]:
        files, self.pending = cut_files(self.pending, self.state.files_written, self.config.rows_per_file, final)
        self.state.files_written += len(files)
        return files

    def snapshot(self) -> EngineState:
        return replace(self.state, pending=pending_table(self.pending), detections_by_pattern=dict(self.state.detections_by_pattern))


def _batches(importance: pa.Table | Iterable[pa.Table]) -> Iterable[pa.Table]:
    return [importance] if isinstance(importance, pa.Table) else importance


def _empty_state() -> EngineState:
    """No pairs, no rows waiting, every counter at zero (a new object each time: it is mutated)."""
    return initial_state([])
