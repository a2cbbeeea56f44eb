"""The detection engine: folds chunks into aggregate state and emits each detection once.

Plain Python over Arrow tables and an in-process DuckDB; no Airflow, no S3. The SQL lives in
``sql/``, one query a file. The caller decides where chunks come from, where detection files
go and when the state is committed (``patternflow.engine.state``).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from patternflow.engine.aggregates import CANDIDATES_SCHEMA, FEMALE, MALE, MERCHANTS_SCHEMA, OTHER_GENDER, PAIRS_SCHEMA, PairAggregates
from patternflow.engine.clock import Clock, iso_ist, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detections import Detection, DetectionFile, cut_files, pending_rows, pending_table
from patternflow.engine.emitted_keys import KEYS_SCHEMA, NO_CUSTOMER, EmittedKeys
from patternflow.engine.ids import IdDictionary
from patternflow.ingest import columns, schema, stringbytes

PATTERNS = ("PatId1", "PatId2", "PatId3")
FOLDED_COLUMNS = ("customer", "gender", "merchant", "amount")
"""The transaction columns the engine reads: a chunk parsed for it needs no others
(``parse_transactions(..., columns=FOLDED_COLUMNS)`` still checks them all)."""
WEIGHT_COLUMNS = ("Source", "Target", "Weight")
"""The CustomerImportance columns the engine reads (``DetectionEngine.start``)."""
_VIEWS = ("pattern_upgrade", "pattern_child", "pattern_dei_needed")
_PER_CHUNK = ("fold_chunk", "new_detections")
_THRESHOLDS = (
    "upgrade_min_merchant_transactions",
    "child_min_transactions",
    "child_max_average_amount",
    "dei_min_female_customers",
)
"""Settings the pattern queries read, each as a DuckDB macro of the same name."""
_GENDER_BITS = {"F": FEMALE, "M": MALE}
_GENDER_BIT_OF_BYTE = np.full(256, OTHER_GENDER, dtype=np.uint8)
_GENDER_BIT_OF_BYTE[[ord(g) for g in _GENDER_BITS]] = list(_GENDER_BITS.values())
_AMOUNT_BOUND = Decimal(10) ** 10
"""No amount, and so no average amount, reaches it in size (decimal128(12, 2))."""
_EMITTED_PARTS = 64
"""Tables of emitted keys by name kept apart (one a chunk that found any) before they are joined."""
_CHUNK_SCHEMA = pa.schema([("pair", pa.int32()), ("cents", pa.int64()), ("gender", pa.uint8())])
EMITTED_SCHEMA = pa.schema(
    [("pattern_id", pa.string()), ("action_type", pa.string()), ("customer", pa.string()), ("merchant", pa.string())]
)
"""Every detection key emitted so far, by name (the state's form)."""
_INPUT_SCHEMAS = {
    "chunk": _CHUNK_SCHEMA,
    "candidates": CANDIDATES_SCHEMA,
    "merchants": MERCHANTS_SCHEMA,
    "emitted": KEYS_SCHEMA,
}
_Result = TypeVar("_Result")


@cache
def sql(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return resources.files("patternflow.engine").joinpath("sql", f"{name}.sql").read_text()


@dataclass
class EngineState:
    """Everything the engine needs to continue a stream, as Arrow tables and counters."""

    customers: pa.Table
    """Customer names; a customer's id is its row (``patternflow.engine.ids``)."""
    merchants: pa.Table
    """Merchant names; a merchant's id is its row."""
    pairs: pa.Table
    """The aggregates, one row per (merchant, customer) pair (``patternflow.engine.aggregates``)."""
    emitted: pa.Table
    pending: pa.Table
    chunks_folded: int = 0
    rows_folded: int = 0
    files_written: int = 0
    detections: int = 0
    detections_by_pattern: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    finished: bool = False
    committed_as: str | None = None
    """The id of the committed version this state was loaded as (``patternflow.engine.state``);
    None for a state no commit wrote."""


@dataclass(frozen=True)
class StateChanges:
    """What an engine changed since the committed version it continues: what a commit writes
    instead of the whole state. Tables other than pairs only grow at their end."""

    since: str
    """The id of that committed version (``EngineState.committed_as``)."""
    appended: EngineState
    """The rows added to customers, merchants, pairs and emitted since, with the pending rows
    and the counters as they are now."""
    updated_pairs: np.ndarray
    """The ids of the pairs from before that changed."""
    updates: pa.Table
    """Their new values, one row an updated pair, in just the columns that changed."""


@dataclass(frozen=True)
class ChunkResult:
    index: int
    rows: int
    new_detections: dict[str, int]
    files: list[DetectionFile]
    seconds: float
    detections: tuple[Detection, ...] = ()
    """The chunk's new detections in the contract's order (what a merchant partition hands on)."""


class OutOfOrderChunk(ValueError):
    pass


class ArrowInput:
    """A table the SQL reads by name, registered with DuckDB once; the engine swaps the Arrow
    table behind it for each query. DuckDB reads the schema and the rows through the Arrow
    PyCapsule interface at every scan, so it always sees the current table."""

    def __init__(self, schema: pa.Schema) -> None:
        self._empty = columns.empty(schema)  # made once: making one costs about 50 us
        self.table = self._empty

    def clear(self) -> None:
        self.table = self._empty

    def __arrow_c_schema__(self) -> object:
        return self.table.schema.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self.table.__arrow_c_stream__(requested_schema)


class DetectionEngine:
    def __init__(self, config: DetectionConfig, state: EngineState, clock: Clock = now_ist, cuts_files: bool = True) -> None:
        """``cuts_files``: False for the engine of one merchant partition, whose detections are
        merged with the other partitions' before they are cut into files (``ChunkResult.detections``)."""
        self.config = config
        self.cuts_files = cuts_files
        self.clock = clock
        self.customers = IdDictionary.from_table(state.customers)
        self.merchants = IdDictionary.from_table(state.merchants)
        self.aggregates = PairAggregates(state.pairs, len(self.customers), len(self.merchants))
        # DuckDB holds no data: every query reads Arrow inputs that the engine keeps.
        self.con = duckdb.connect(config={"threads": 1})
        self._define_thresholds()
        self._emitted = self._emitted_keys(state.emitted)
        self._emitted_by_name = [state.emitted]
        """The emitted keys by name, added to as they are found: a commit never converts them all."""
        # Registered once: each chunk only swaps the tables behind them (registering costs as
        # much as a small query).
        self.inputs = {name: ArrowInput(schema) for name, schema in _INPUT_SCHEMAS.items()}
        for name, holder in self.inputs.items():
            self.con.register(name, holder)
        for view in _VIEWS:
            self.con.execute(f"CREATE VIEW {view} AS {sql(view)}").fetchall()
        # Each chunk runs the same two statements: prepared once, they are not parsed, bound and
        # optimised again at every chunk (about a third of their cost on a chunk's few rows).
        for statement in _PER_CHUNK:
            self.con.execute(f"PREPARE {statement} AS {sql(statement)}").fetchall()
        # ... and each EXECUTE is parsed once too
        self._execute = {name: self.con.extract_statements(f"EXECUTE {name}")[0] for name in _PER_CHUNK}
        self._pending = pending_rows(state.pending)
        self.chunks_folded = state.chunks_folded
        self.rows_folded = state.rows_folded
        self.files_written = state.files_written
        self.detections = state.detections
        self.detections_by_pattern = dict(state.detections_by_pattern)
        self.finished = state.finished
        self.committed(state.committed_as)

    @classmethod
    def start(
        cls, importance: pa.Table | Iterable[pa.Table] | WeightRanks, config: DetectionConfig, clock: Clock = now_ist
    ) -> DetectionEngine:
        """A new stream: no transactions yet, weights computed once from CustomerImportance (a
        table, or its batches: memory then follows the pairs, not the file's size; or its ranks)."""
        return cls(config, initial_state(importance), clock)

    def _define_thresholds(self) -> None:
        """Each threshold as a macro (``child_min_transactions()``): a constant in the prepared
        plans, where a DuckDB variable would make every execution bind the statement again.

        A decimal keeps every one of its digits (DECIMAL(38, its decimals)). Averages of amounts
        lie within +-10^10 (amounts fit DECIMAL(12, 2)), so a threshold beyond that compares
        exactly as that bound does, and is given as that bound."""
        for name in _THRESHOLDS:
            value = getattr(self.config, name)
            if isinstance(value, Decimal):
                value = min(max(value, -_AMOUNT_BOUND), _AMOUNT_BOUND)
                kind = f"DECIMAL(38, {max(0, -value.as_tuple().exponent)})"
            else:
                kind = "BIGINT"
            self.con.execute(f"CREATE MACRO {name}() AS CAST('{format(value, 'f')}' AS {kind})").fetchall()

    def _emitted_keys(self, emitted: pa.Table) -> EmittedKeys:
        keys = EmittedKeys(PATTERNS)
        if emitted.num_rows:
            customers = emitted.column("customer").to_pylist()
            ids = iter(self.customers.lookup([c for c in customers if c]).tolist())
            customer_ids = np.array([next(ids) if c else NO_CUSTOMER for c in customers], dtype=np.int32)
            merchant_ids = self.merchants.lookup(emitted.column("merchant").to_pylist())
            keys.add(emitted.column("pattern_id").to_pylist(), self._pair_ids(customer_ids, merchant_ids), merchant_ids)
        return keys

    def _pair_ids(self, customers: np.ndarray, merchants: np.ndarray) -> np.ndarray:
        """The pair id of each key's (customer, merchant), -1 for a key with no customer."""
        pairs = np.full(len(customers), -1, dtype=np.int32)
        own = customers != NO_CUSTOMER
        pairs[own] = self.aggregates.known_pair_ids(customers[own], merchants[own])
        if (pairs[own] < 0).any():  # a state no engine wrote: its keys would not be found again
            raise ValueError("an emitted detection key names a (customer, merchant) pair the state does not hold")
        return pairs

    @property
    def pending(self) -> int:
        """Detections waiting for their file (fewer than a file's worth)."""
        return len(self._pending)

    def fold(self, index: int, chunk: pa.Table, began: datetime | None = None) -> ChunkResult:
        """Fold chunk ``index`` into the state, then emit what newly qualifies and cut full files.

        ``began``: when processing of the chunk began (its detections' YStartTime), for a caller
        that fetched and parsed it first; by default, now.
        """
        if self.finished:
            raise OutOfOrderChunk(f"chunk {index} arrived after the end of the stream")
        if index != self.chunks_folded:
            raise OutOfOrderChunk(f"expected chunk {self.chunks_folded}, got chunk {index}")
        started = time.perf_counter()
        y_start = iso_ist(began if began is not None else self.clock())
        touched = self._fold(chunk)
        found = self._detect(touched)
        detected = iso_ist(self.clock())
        found.sort(key=lambda r: (r[0], r[3], r[2]))  # patternId, MerchantId, customerName
        detections = tuple(Detection(y_start, detected, *row) for row in found)
        if self.cuts_files:
            self._pending.extend(detections)
        counts = Counter(row[0] for row in found)
        for pattern, n in counts.items():
            self.detections_by_pattern[pattern] = self.detections_by_pattern.get(pattern, 0) + n
        self.detections += len(found)
        self.chunks_folded += 1
        self.rows_folded += chunk.num_rows
        files = self._cut_files(final=False)
        new = {p: counts.get(p, 0) for p in PATTERNS}
        return ChunkResult(index, chunk.num_rows, new, files, time.perf_counter() - started, detections)

    def _fold(self, chunk: pa.Table) -> np.ndarray:
        """Add the chunk to the aggregates (``fold_chunk.sql``); returns the ids of the pairs it touched."""
        if not chunk.num_rows:
            return np.empty(0, dtype=np.int32)
        customers = self.customers.encode(chunk.column("customer"))
        merchants = self.merchants.encode(chunk.column("merchant"))
        pairs = self.aggregates.pair_ids(customers, merchants, len(self.customers), len(self.merchants))
        rows = columns.table(
            {"pair": pairs, "cents": _cents(chunk.column("amount")), "gender": _gender_bits(chunk.column("gender"))}, _CHUNK_SCHEMA
        )
        sums = self._query("fold_chunk", duckdb.DuckDBPyConnection.fetchnumpy, chunk=rows)
        touched = np.asarray(sums["pair"], dtype=np.int32)
        self.aggregates.add(touched, np.asarray(sums["n"]), np.asarray(sums["cents"]), np.asarray(sums["genders"]))
        return touched

    def _detect(self, touched: np.ndarray) -> list[tuple[str, str, str, str]]:
        """Evaluate the patterns over what the chunk can have changed; new detections by name.

        Only two kinds of pairs can newly qualify: those the chunk touched (their values changed)
        and, at merchants over UPGRADE's size whose thresholds loosened (P90 fell or W10 rose as
        other customers changed), those whose weight is within W10. The queries see just those.
        """
        aggregates, config = self.aggregates, self.config
        large = np.flatnonzero(aggregates.total[: aggregates.merchants] > config.upgrade_min_merchant_transactions)
        upgrade = aggregates.upgrade_thresholds(large, config.upgrade_count_quantile, config.upgrade_weight_quantile)
        pairs = _union(touched, upgrade.pairs)
        candidates, merchants = aggregates.inputs(pairs, upgrade)
        emitted = self._emitted.among(
            pairs, columns.to_numpy(candidates.column("customer")), columns.to_numpy(candidates.column("merchant"))
        )
        found = self._query(
            "new_detections", duckdb.DuckDBPyConnection.fetchall, candidates=candidates, merchants=merchants, emitted=emitted
        )
        if not found:
            return []
        patterns, actions, customers, merchants = (list(values) for values in zip(*found, strict=True))
        customer_ids, merchant_ids = np.array(customers, dtype=np.int32), np.array(merchants, dtype=np.int32)
        self._emitted.add(patterns, self._pair_ids(customer_ids, merchant_ids), merchant_ids)
        names = iter(self.customers.names_of([c for c in customers if c != NO_CUSTOMER]))
        customer_names = [next(names) if c != NO_CUSTOMER else "" for c in customers]
        merchant_names = self.merchants.names_of(merchants)
        self._emitted_by_name.append(columns.from_columns([patterns, actions, customer_names, merchant_names], EMITTED_SCHEMA))
        return list(zip(patterns, actions, customer_names, merchant_names, strict=True))

    def _query(self, name: str, fetch: Callable[[duckdb.DuckDBPyConnection], _Result], **inputs: pa.Table) -> _Result:
        """Run the prepared ``sql/<name>.sql`` over the given input tables and fetch its result;
        the tables are released afterwards, so that no chunk's buffers outlive its fold."""
        for input_name, table in inputs.items():
            self.inputs[input_name].table = table
        try:
            return fetch(self.con.execute(self._execute[name]))
        finally:
            for input_name in inputs:
                self.inputs[input_name].clear()

    def finish(self) -> list[DetectionFile]:
        """End of stream: the rows still waiting (1 to 49) go to one last file."""
        files = self._cut_files(final=True)
        self.finished = True
        return files

    def _cut_files(self, final: bool) -> list[DetectionFile]:
        files, self._pending = cut_files(self._pending, self.files_written, self.config.rows_per_file, final)
        self.files_written += len(files)
        return files

    def snapshot(self) -> EngineState:
        return EngineState(
            customers=self.customers.to_table(),
            merchants=self.merchants.to_table(),
            pairs=self.aggregates.to_table(),
            emitted=self._emitted_names(),
            pending=pending_table(self._pending),
            **self._counters(),
        )

    def changes(self) -> StateChanges | None:
        """What the state changed since the committed version it continues, read off the marks
        the folds left (O(changes)); None before a stream's first commit."""
        if self.committed_as is None:
            return None
        customers, merchants, emitted = self._committed_sizes
        pairs, updated_pairs, updates = self.aggregates.changes()
        appended = EngineState(
            customers=self.customers.to_table().slice(customers),
            merchants=self.merchants.to_table().slice(merchants),
            pairs=pairs,
            emitted=self._emitted_names().slice(emitted),
            pending=pending_table(self._pending),
            **self._counters(),
        )
        return StateChanges(self.committed_as, appended, updated_pairs, updates)

    def committed(self, commit_id: str | None) -> None:
        """The state as it is now is the committed version ``commit_id``: ``changes`` counts from here."""
        self.committed_as = commit_id
        self._committed_sizes = (len(self.customers), len(self.merchants), self._emitted.count)
        self.aggregates.mark_unchanged()

    def _counters(self) -> dict:
        return {
            "chunks_folded": self.chunks_folded,
            "rows_folded": self.rows_folded,
            "files_written": self.files_written,
            "detections": self.detections,
            "detections_by_pattern": dict(self.detections_by_pattern),
            "finished": self.finished,
        }

    def _emitted_names(self) -> pa.Table:
        if len(self._emitted_by_name) > _EMITTED_PARTS:
            self._emitted_by_name = [pa.concat_tables(self._emitted_by_name).combine_chunks()]
        return pa.concat_tables(self._emitted_by_name)  # no copy

    def close(self) -> None:
        self.con.close()


def _union(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The distinct ids in either array, each holding its ids once.

    ``second`` (the pairs UPGRADE's loosened thresholds qualify) is empty at most chunks, and a
    few pairs at the others: it is checked against ``first``, never a mask over every pair.
    """
    if not len(second):
        return first
    return np.concatenate([first, second[~np.isin(second, first)]]).astype(np.int32, copy=False)


def _cents(amounts: pa.ChunkedArray) -> np.ndarray:
    """Amounts (two decimals at most) as exact integer cents: a ``decimal128(p, 2)`` value's
    unscaled integer (``columns.decimal_units``), else converted by Arrow."""
    if pa.types.is_decimal128(amounts.type) and amounts.type.scale == 2 and not amounts.null_count:
        cents = columns.decimal_units(amounts)
        if cents is not None:
            return cents
    return pc.cast(pc.multiply(amounts, pa.scalar(100)), pa.int64()).to_numpy()


def _gender_bits(genders: pa.ChunkedArray) -> np.ndarray:
    """Each gender as the bit the aggregates' gender set uses: F 1, M 2, anything else 4."""
    letters = stringbytes.single_bytes(genders)
    if letters is not None:
        return _GENDER_BIT_OF_BYTE[letters]
    encoded = pc.dictionary_encode(genders.combine_chunks())
    bits = np.array([_GENDER_BITS.get(g, OTHER_GENDER) for g in encoded.dictionary.to_pylist()], dtype=np.uint8)
    return bits[encoded.indices.to_numpy(zero_copy_only=False)]


@dataclass(frozen=True)
class WeightRanks:
    """What a stream keeps of CustomerImportance: each (merchant, customer) pair and the dense rank
    of its weight among its merchant's, in id order (``weight_ranks.sql``). Small (one row a pair),
    so the producer computes it once at stream start and the detector starts from it."""

    table: pa.Table


def initial_state(importance: pa.Table | Iterable[pa.Table] | WeightRanks) -> EngineState:
    """The state of a stream before its first chunk: the CustomerImportance pairs and their weight
    ranks, from the whole table, from the batches of one, or from the ranks already computed."""
    if isinstance(importance, WeightRanks):
        return initial_state_from_ranks(importance)
    return initial_state_from_ranks(weight_ranks([importance] if isinstance(importance, pa.Table) else importance))


def initial_state_from_batches(batches: Iterable[pa.Table]) -> EngineState:
    """``initial_state`` of the CustomerImportance rows of every batch, read one batch at a time."""
    return initial_state_from_ranks(weight_ranks(batches))


def weight_ranks(batches: Iterable[pa.Table]) -> WeightRanks:
    """The weight ranks of the CustomerImportance rows of every batch, read one batch at a time.

    DuckDB reads the batches as one Arrow stream, pulling the next as it needs it, and sums them
    per pair in a single aggregation (``importance_weights.sql``): memory follows the number of
    pairs, not the size of the file, and no sums are added up again batch after batch. Any
    batching of the same rows gives the same ranks in the same order (``weight_ranks.sql``), and
    so the same ids. An error raised while reading a batch (a bad file) is raised here, once
    DuckDB has stopped reading.
    """
    failure: list[BaseException] = []
    stream = pa.RecordBatchReader.from_batches(_IMPORTANCE_READ, _weight_batches(batches, failure))
    weights = _run_alone(sql("importance_weights"), importance=stream)
    if failure:
        raise failure[0]
    return WeightRanks(_run_alone(sql("weight_ranks"), weights=weights))


def _run_alone(query: str, **inputs: pa.Table | pa.RecordBatchReader) -> pa.Table:
    """The result of one large query over Arrow inputs, on one thread and a connection of its own.

    DuckDB keeps a query's working memory until its connection closes, and each thread has its
    own: at a hundred times BankSim's size (2.4 M pairs) the two start queries peaked at 1,040 MB
    on two threads sharing a connection, and at 723 MB like this, in about the same time."""
    with contextlib.closing(duckdb.connect(config={"threads": 1})) as con:
        for name, table in inputs.items():
            con.register(name, table)
        return con.sql(query).to_arrow_table()


_IMPORTANCE_READ = pa.schema([schema.IMPORTANCE.field(name) for name in WEIGHT_COLUMNS])


def _weight_batches(batches: Iterable[pa.Table], failure: list[BaseException]) -> Iterator[pa.RecordBatch]:
    """The record batches of ``batches``' weight columns; an error ends them and is kept in
    ``failure``, for the caller to raise as it is (through DuckDB it would become a message)."""
    try:
        for batch in batches:
            yield from batch.select(list(WEIGHT_COLUMNS)).cast(_IMPORTANCE_READ).to_batches()
    except BaseException as exc:  # re-raised by weight_ranks, with its type and message
        failure.append(exc)


def initial_state_from_ranks(ranks: WeightRanks) -> EngineState:
    """The state before the first chunk: a pair for every ranked (merchant, customer), ids given
    in the ranks' order."""
    weights = ranks.table
    customers, merchants = IdDictionary(), IdDictionary()
    zeros = np.zeros(weights.num_rows, dtype=np.int64)
    pairs = columns.table(
        {
            "merchant": merchants.encode(weights.column("merchant")),
            "customer": customers.encode(weights.column("customer")),
            "n": zeros,
            "cents": zeros,
            "genders": np.zeros(weights.num_rows, dtype=np.uint8),
            "weight_rank": weights.column("weight_rank"),
        },
        PAIRS_SCHEMA,
    )
    return EngineState(
        customers=customers.to_table(),
        merchants=merchants.to_table(),
        pairs=pairs,
        emitted=columns.empty(EMITTED_SCHEMA),
        pending=pending_table([]),
    )
