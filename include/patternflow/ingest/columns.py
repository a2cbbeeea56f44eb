"""Arrow columns from numpy arrays and Python values, and back, straight through their buffers.

pyarrow imports pandas, when it is installed, the first time it converts Python or numpy values
(``pa.array``, ``pa.table`` of lists, ``Array.to_numpy``, ``Schema.empty_table``,
``pq.read_table``). Nothing here uses pandas, and importing it costs about 0.25 s, plus 0.05 s
more at exit: a quarter of a whole ``patternflow replay``, and as much again in every detection
task. The engine, the state and the clean parsing path convert through these functions
instead; ``tests/unit/test_columns.py`` checks that a replay never imports pandas.

Only what the engine needs: fixed-width numeric columns without nulls, and strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np
import pyarrow as pa

Values = pa.Array | pa.ChunkedArray | np.ndarray | Sequence[str] | Sequence[int]


def from_numpy(values: np.ndarray, type: pa.DataType | None = None) -> pa.Array:
    """A 1-d numeric numpy array as an Arrow array of ``type`` (its own type by default),
    sharing its memory when no conversion is needed."""
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        raise TypeError(f"expected a 1-d numeric array, got {values.ndim}-d {values.dtype}")
    type = type or pa.from_numpy_dtype(values.dtype)
    values = np.ascontiguousarray(values, dtype=numpy_dtype(type))
    return pa.Array.from_buffers(type, len(values), [None, pa.py_buffer(values)])


def strings(values: Sequence[str]) -> pa.Array:
    """Python strings as an Arrow string array (no nulls)."""
    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("more than 2 GiB of strings in one array")
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))])


def to_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric Arrow column without nulls as numpy: a read-only view of its buffer when it is
    one chunk, else a copy."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    dtype = numpy_dtype(values.type)
    parts = []
    for chunk in chunks:
        if chunk.null_count:
            raise ValueError(f"a {chunk.type} column with {chunk.null_count} nulls has no numpy form here")
        data = chunk.buffers()[1]
        parts.append(np.frombuffer(data, dtype=dtype)[chunk.offset : chunk.offset + len(chunk)] if data is not None else np.empty(0, dtype))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


@cache  # called for every column the engine converts, a few dozen times a chunk
def numpy_dtype(type: pa.DataType) -> np.dtype:
    """The numpy dtype of a numeric Arrow type (int8 ... uint64, float32, float64)."""
    if not (pa.types.is_integer(type) or pa.types.is_floating(type)):
        raise TypeError(f"not a numeric Arrow type: {type}")
    return np.dtype(type.to_pandas_dtype())


def array(values: Values, type: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """``values`` as an Arrow column of ``type``: Arrow columns as they are, numpy arrays and
    lists of numbers through ``from_numpy``, lists of strings through ``strings``."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        if values.type != type:
            raise TypeError(f"expected {type}, got {values.type}")
        return values
    if pa.types.is_string(type):
        return strings(values)
    return from_numpy(np.asarray(values, dtype=numpy_dtype(type)), type)


def table(columns: Mapping[str, Values], schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from one column of values a field, given by name."""
    if list(columns) != schema.names:
        raise ValueError(f"columns {list(columns)} do not match the schema's {schema.names}")
    return from_columns(list(columns.values()), schema)


def from_columns(columns: Sequence[Values], schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from one column of values a field, in the schema's order."""
    if len(columns) != len(schema):
        raise ValueError(f"{len(columns)} columns for the schema's {len(schema)} fields")
    return pa.Table.from_arrays([array(values, field.type) for values, field in zip(columns, schema, strict=True)], schema=schema)


def empty(schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` with no rows."""
    return pa.Table.from_batches([], schema)


def decimal_units(values: pa.ChunkedArray) -> np.ndarray | None:
    """The unscaled integers of a decimal128 column without nulls (cents, for scale 2), when every
    one fits in 64 bits; else None.

    A decimal128 value is stored as a 16-byte little-endian integer: it fits in 64 bits exactly
    when its high 8 bytes are the sign extension of its low 8, which are then read as they are.
    """
    parts = []
    for chunk in values.chunks:
        words = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[2 * chunk.offset : 2 * (chunk.offset + len(chunk))]
        low, high = words[0::2], words[1::2]
        if not np.array_equal(high, low >> 63):
            return None
        parts.append(low)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
