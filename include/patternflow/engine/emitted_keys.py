"""The detection keys emitted so far, kept beside the rows they belong to.

Each detection is emitted once: ``sql/new_detections.sql`` takes the pattern queries' rows less
the keys already emitted. Handing it every key emitted at every chunk costs what the history
does (61,000 keys at 100 times BankSim's volume, against a chunk's few thousand candidates).
A key (pattern, customer, merchant) belongs to a pair, or to a merchant alone when it has no
customer (DEI-NEEDED), so a bit a pattern on each pair and on each merchant holds the same set,
and the query receives just the keys of the pairs it is given.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from patternflow.engine.aggregates import with_room
from patternflow.ingest import columns

NO_CUSTOMER = -1
"""The customer id of a key with no customer (DEI-NEEDED's empty customerName)."""
KEYS_SCHEMA = pa.schema([("pattern_id", pa.string()), ("customer", pa.int32()), ("merchant", pa.int32())])
"""Emitted keys by dense id, as ``sql/new_detections.sql`` reads them."""


class EmittedKeys:
    """The set of emitted keys, as bits by pair id and by merchant id (one bit a pattern)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        if len(patterns) > 8:
            raise ValueError("one byte holds the bits of at most 8 patterns")
        self._patterns = patterns
        self._names = columns.strings(list(patterns))
        self._by_pair = np.zeros(16, dtype=np.uint8)
        self._by_merchant = np.zeros(16, dtype=np.uint8)
        self.count = 0

    def add(self, patterns: list[str], pairs: np.ndarray, merchants: np.ndarray) -> None:
        """Record new keys: each one's pattern, pair id (-1 for a key with no customer) and merchant id."""
        bits = np.array([1 << self._patterns.index(p) for p in patterns], dtype=np.uint8)
        pairs, merchants = np.asarray(pairs, dtype=np.int64), np.asarray(merchants, dtype=np.int64)
        own = pairs >= 0
        self._by_pair = with_room(self._by_pair, int(pairs.max(initial=-1)) + 1)
        self._by_merchant = with_room(self._by_merchant, int(merchants.max(initial=-1)) + 1)
        np.bitwise_or.at(self._by_pair, pairs[own], bits[own])
        np.bitwise_or.at(self._by_merchant, merchants[~own], bits[~own])
        self.count += len(bits)

    def among(self, pairs: np.ndarray, customers: np.ndarray, merchants: np.ndarray) -> pa.Table:
        """The emitted keys of the given pairs (with their customer and merchant ids), and every
        emitted key with no customer (``KEYS_SCHEMA``)."""
        pairs = np.asarray(pairs, dtype=np.int64)
        bits = np.zeros(len(pairs), dtype=np.uint8)
        known = pairs < len(self._by_pair)
        bits[known] = self._by_pair[pairs[known]]
        alone = self._by_merchant
        codes, who, where = [], [], []
        for code in range(len(self._patterns)):
            bit = 1 << code
            mine = np.flatnonzero(bits & bit)
            theirs = np.flatnonzero(alone & bit)
            codes.append(np.full(len(mine) + len(theirs), code, dtype=np.int32))
            who += [customers[mine], np.full(len(theirs), NO_CUSTOMER, dtype=np.int32)]
            where += [merchants[mine], theirs]
        names = pc.take(self._names, columns.from_numpy(np.concatenate(codes), pa.int32()))
        return columns.from_columns([names, np.concatenate(who).astype(np.int32), np.concatenate(where).astype(np.int32)], KEYS_SCHEMA)
