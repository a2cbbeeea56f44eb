"""Column names and Arrow types of the two input files (the data contract).

Amounts and weights are ``decimal128(12, 2)``: the contract says they carry at most two
decimals, and every average and comparison downstream is done exactly on them.
"""

from __future__ import annotations

import pyarrow as pa

MONEY = pa.decimal128(12, 2)

TRANSACTIONS = pa.schema(
    [
        ("step", pa.int32()),
        ("customer", pa.string()),
        ("age", pa.string()),
        ("gender", pa.string()),
        ("zipcodeOri", pa.string()),
        ("merchant", pa.string()),
        ("zipMerchant", pa.string()),
        ("category", pa.string()),
        ("amount", MONEY),
        ("fraud", pa.int8()),
    ]
)

IGNORED = {b"patternflow": b"ignored"}
"""Field metadata of a column that is read but never checked (any value, even empty, is kept as text)."""

IMPORTANCE = pa.schema(
    [
        ("Source", pa.string()),
        ("Target", pa.string()),
        ("Weight", MONEY),
        ("typeTrans", pa.string()),
        pa.field("fraud", pa.string(), metadata=IGNORED),  # the contract: "fraud is ignored"
    ]
)


def is_ignored(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(b"patternflow") == IGNORED[b"patternflow"]
