"""Test helpers: build streams, run the engine with a deterministic clock, read detection files."""

from __future__ import annotations

import csv
import io
import socket
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
import pyarrow as pa

from patternflow.engine.clock import IST
from patternflow.engine.config import DetectionConfig
from patternflow.engine.state import StateStore
from patternflow.engine.store import LocalStore
from patternflow.engine.stream import commit, open_engine, write_files
from patternflow.ingest import schema

T0 = datetime(2026, 1, 1, tzinfo=IST)


class ChunkClock:
    """Time = T0 + chunk index seconds (+1 ms for the detection time): output depends only on the chunk."""

    def __init__(self) -> None:
        self.chunk = 0
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        offset = timedelta(seconds=self.chunk, milliseconds=0 if self.calls % 2 else 1)
        return T0 + offset

    def times(self, chunk: int) -> tuple[str, str]:
        start = T0 + timedelta(seconds=chunk)
        return start.isoformat(timespec="milliseconds"), (start + timedelta(milliseconds=1)).isoformat(timespec="milliseconds")


def transactions_table(rows: list[tuple]) -> pa.Table:
    """Rows of (customer, merchant, gender, amount) as a parsed transactions table."""
    return pa.table(
        {
            "step": pa.array([0] * len(rows), pa.int32()),
            "customer": [r[0] for r in rows],
            "age": ["3"] * len(rows),
            "gender": [r[2] for r in rows],
            "zipcodeOri": ["28007"] * len(rows),
            "merchant": [r[1] for r in rows],
            "zipMerchant": ["28007"] * len(rows),
            "category": ["es_food"] * len(rows),
            "amount": pa.array([Decimal(str(r[3])) for r in rows], schema.MONEY),
            "fraud": pa.array([0] * len(rows), pa.int8()),
        },
        schema=schema.TRANSACTIONS,
    )


def importance_table(rows: list[tuple]) -> pa.Table:
    """Rows of (customer, merchant, weight)."""
    return pa.table(
        {
            "Source": [r[0] for r in rows],
            "Target": [r[1] for r in rows],
            "Weight": pa.array([Decimal(str(r[2])) for r in rows], schema.MONEY),
            "typeTrans": ["es_food"] * len(rows),
            "fraud": ["0"] * len(rows),
        },
        schema=schema.IMPORTANCE,
    )


def run_stream(
    transactions: pa.Table,
    importance: pa.Table,
    config: DetectionConfig,
    out,
    state_dir=None,
    per_call: int | None = None,
) -> dict[str, str]:
    """Fold every chunk, ``per_call`` chunks per engine session (state committed and reloaded between)."""
    clock = ChunkClock()
    outputs = LocalStore(out)
    state = StateStore(LocalStore(state_dir)) if state_dir else None
    chunks = -(-transactions.num_rows // config.chunk_size)
    per_call = per_call or max(chunks, 1)
    engine = None
    for index in range(chunks):
        if engine is None:
            engine = open_engine(state, lambda: importance, config, clock)
        clock.chunk = index
        result = engine.fold(index, transactions.slice(index * config.chunk_size, config.chunk_size))
        write_files(outputs, "", result.files)
        if state and ((index + 1) % per_call == 0):
            commit(state, engine)
            engine.close()
            engine = None
    if engine is None:
        engine = open_engine(state, lambda: importance, config, clock)
    clock.chunk = chunks
    write_files(outputs, "", engine.finish())
    commit(state, engine)
    engine.close()
    return read_files(out)


def read_files(folder) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(LocalStore(folder).root.glob("detection_*.csv"))}


def file_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))[1:]


def expected_files(sequence: list[tuple], config: DetectionConfig) -> dict[str, str]:
    """Detection files from a reference sequence of (chunk, pattern, action, customer, merchant)."""
    clock = ChunkClock()
    files = {}
    size = config.rows_per_file
    for number, start in enumerate(range(0, len(sequence), size)):
        lines = ["YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId"]
        for chunk, pattern, action, customer, merchant in sequence[start : start + size]:
            y_start, detected = clock.times(chunk)
            lines.append(f"{y_start},{detected},{pattern},{action},{customer},{merchant}")
        files[f"detection_{number}.csv"] = "\n".join(lines) + "\n"
    return files


def as_frames(transactions: pa.Table, importance: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference implementation's inputs: amounts as integer cents."""
    t = pd.DataFrame(
        {
            "customer": transactions["customer"].to_pylist(),
            "merchant": transactions["merchant"].to_pylist(),
            "gender": transactions["gender"].to_pylist(),
            "cents": [int(a * 100) for a in transactions["amount"].to_pylist()],
        }
    )
    i = pd.DataFrame(
        {
            "Source": importance["Source"].to_pylist(),
            "Target": importance["Target"].to_pylist(),
            "cents": [int(w * 100) for w in importance["Weight"].to_pylist()],
        }
    )
    return t, i


LIVELY = {
    "upgrade_min_merchant_transactions": "3000",
    "child_min_transactions": "30",
    "dei_min_female_customers": "10",
}
"""Thresholds under which all three patterns fire on the 60,000-row generated stream (3 files)."""


def lively_config(chunk_size: int) -> DetectionConfig:
    return DetectionConfig(chunk_size=chunk_size, **{k: int(v) for k, v in LIVELY.items()})


def lively_environment(chunk_size: int) -> dict[str, str]:
    """The same thresholds as ``PATTERNFLOW_*`` settings, for the DAGs."""
    return {f"PATTERNFLOW_{k.upper()}": v for k, v in LIVELY.items()} | {"PATTERNFLOW_CHUNK_SIZE": str(chunk_size)}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (tests run beside other servers), and
    that no earlier call returned: the kernel may hand out a port just released again, and two
    servers of one test (S3 and the UI, say) would then be given the same port."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class Killed(Exception):
    """A process dying at this point: nothing after it happens."""


class DiesAtWrite:
    """Mixed into an object store: the store's process dies (``Killed``) at its ``die_at``-th
    write, a put, a conditional replace or a delete, as a process killed there would; None: never."""

    def __init__(self, *args, die_at: int | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.die_at, self.writes = die_at, 0

    def _write(self) -> None:
        self.writes += 1
        if self.writes == self.die_at:
            raise Killed

    def put(self, key, data):
        self._write()
        return super().put(key, data)

    def replace(self, key, data, expected):
        self._write()
        return super().replace(key, data, expected)

    def delete(self, keys):
        self._write()
        return super().delete(keys)
