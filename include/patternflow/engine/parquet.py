"""Tables as Parquet bytes and back: the one format of everything the engine keeps in a store."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as a zstd-compressed Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def parquet_table(data: bytes) -> pa.Table:
    """The table of a Parquet file's bytes (``ParquetFile.read``: ``read_table`` would import pandas)."""
    return pq.ParquetFile(pa.BufferReader(data)).read()
