"""The detection engine: folds chunks into aggregate state and emits each detection once.

Plain Python over Arrow tables and an in-process DuckDB; no Airflow, no S3. The SQL lives in
``sql/``, one query a file. The caller decides where chunks come from, where detection files
go and when the state is committed (``patternflow.state``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources

import duckdb
import pyarrow as pa

from patternflow.clock import Clock, iso_ist, now_ist
from patternflow.config import DetectionConfig
from patternflow.detections import Detection, DetectionFile, pending_rows, pending_table

PATTERNS = ("PatId1", "PatId2", "PatId3")
_VIEWS = ("pattern_upgrade", "pattern_child", "pattern_dei_needed")


@cache
def sql(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return resources.files("patternflow").joinpath("sql", f"{name}.sql").read_text()


@dataclass
class EngineState:
    """Everything the engine needs to continue a stream, as Arrow tables and counters."""

    pairs: pa.Table
    emitted: pa.Table
    pending: pa.Table
    chunks_folded: int = 0
    rows_folded: int = 0
    files_written: int = 0
    detections: int = 0
    detections_by_pattern: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    finished: bool = False


@dataclass(frozen=True)
class ChunkResult:
    index: int
    rows: int
    new_detections: dict[str, int]
    files: list[DetectionFile]
    seconds: float


class OutOfOrderChunk(ValueError):
    pass


class DetectionEngine:
    def __init__(self, config: DetectionConfig, state: EngineState, clock: Clock = now_ist) -> None:
        self.config = config
        self.clock = clock
        self.con = duckdb.connect(config={"threads": 1})
        self._set_variables()
        self.con.execute(sql("create_state"))
        for table in ("pairs", "emitted"):
            self.con.register("_snapshot", getattr(state, table))
            self.con.execute(f"INSERT INTO {table} SELECT * FROM _snapshot")
            self.con.unregister("_snapshot")
        for view in _VIEWS:
            self.con.execute(f"CREATE VIEW {view} AS {sql(view)}")
        self._pending = pending_rows(state.pending)
        self.chunks_folded = state.chunks_folded
        self.rows_folded = state.rows_folded
        self.files_written = state.files_written
        self.detections = state.detections
        self.detections_by_pattern = dict(state.detections_by_pattern)
        self.finished = state.finished

    @classmethod
    def start(cls, importance: pa.Table, config: DetectionConfig, clock: Clock = now_ist) -> DetectionEngine:
        """A new stream: no transactions yet, weights computed once from the CustomerImportance table."""
        return cls(config, initial_state(importance), clock)

    def _set_variables(self) -> None:
        c = self.config
        values = {
            "upgrade_min_merchant_transactions": c.upgrade_min_merchant_transactions,
            "upgrade_count_quantile": c.upgrade_count_quantile,
            "upgrade_weight_quantile": c.upgrade_weight_quantile,
            "child_min_transactions": c.child_min_transactions,
            "child_max_average_amount": c.child_max_average_amount,
            "dei_min_female_customers": c.dei_min_female_customers,
        }
        for name, value in values.items():
            kind = "DECIMAL(18, 6)" if isinstance(value, Decimal) else "BIGINT"
            self.con.execute(f"SET VARIABLE {name} = CAST('{value}' AS {kind})")

    @property
    def pending(self) -> int:
        """Detections waiting for their file (fewer than a file's worth)."""
        return len(self._pending)

    def fold(self, index: int, chunk: pa.Table) -> ChunkResult:
        """Fold chunk ``index`` into the state, then emit what newly qualifies and cut full files."""
        if self.finished:
            raise OutOfOrderChunk(f"chunk {index} arrived after the end of the stream")
        if index != self.chunks_folded:
            raise OutOfOrderChunk(f"expected chunk {self.chunks_folded}, got chunk {index}")
        started = time.perf_counter()
        y_start = iso_ist(self.clock())
        self.con.register("chunk", chunk)
        self.con.execute(sql("fold_chunk"))
        self.con.unregister("chunk")
        found = self.con.execute(sql("new_detections")).fetchall()
        detected = iso_ist(self.clock())
        found.sort(key=lambda r: (r[0], r[3], r[2]))  # patternId, MerchantId, customerName
        self._pending.extend(Detection(y_start, detected, *row) for row in found)
        counts = Counter(row[0] for row in found)
        for pattern, n in counts.items():
            self.detections_by_pattern[pattern] = self.detections_by_pattern.get(pattern, 0) + n
        self.detections += len(found)
        self.chunks_folded += 1
        self.rows_folded += chunk.num_rows
        files = self._cut_files(final=False)
        new = {p: counts.get(p, 0) for p in PATTERNS}
        return ChunkResult(index, chunk.num_rows, new, files, time.perf_counter() - started)

    def finish(self) -> list[DetectionFile]:
        """End of stream: the rows still waiting (1 to 49) go to one last file."""
        files = self._cut_files(final=True)
        self.finished = True
        return files

    def _cut_files(self, final: bool) -> list[DetectionFile]:
        size = self.config.rows_per_file
        files = []
        while len(self._pending) >= size or (final and self._pending):
            rows, self._pending = self._pending[:size], self._pending[size:]
            files.append(DetectionFile(self.files_written, tuple(rows)))
            self.files_written += 1
        return files

    def snapshot(self) -> EngineState:
        return EngineState(
            pairs=self.con.sql("SELECT * FROM pairs ORDER BY merchant, customer").to_arrow_table(),
            emitted=self.con.sql("SELECT * FROM emitted").to_arrow_table(),
            pending=pending_table(self._pending),
            chunks_folded=self.chunks_folded,
            rows_folded=self.rows_folded,
            files_written=self.files_written,
            detections=self.detections,
            detections_by_pattern=dict(self.detections_by_pattern),
            finished=self.finished,
        )

    def close(self) -> None:
        self.con.close()


def initial_state(importance: pa.Table) -> EngineState:
    """The state of a stream before its first chunk."""
    con = duckdb.connect(config={"threads": 1})
    con.execute(sql("create_state"))
    con.register("importance", importance)
    con.execute(sql("start_stream"))
    state = EngineState(
        pairs=con.sql("SELECT * FROM pairs ORDER BY merchant, customer").to_arrow_table(),
        emitted=con.sql("SELECT * FROM emitted").to_arrow_table(),
        pending=pending_table([]),
    )
    con.close()
    return state
