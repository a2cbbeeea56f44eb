"""Dense integer ids for customer and merchant names, so that the engine works on integers.

Names are arbitrary non-empty strings (the data contract); the engine's aggregates, joins and
pattern queries run far faster on small integers. A dictionary gives each name the next id the
first time it is met and keeps it for the rest of the stream (it is part of the state), so ids
never depend on how the stream was cut into chunks or sessions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NAMES_SCHEMA = pa.schema([("name", pa.string())])


class IdDictionary:
    """Name <-> dense id (0, 1, 2, ... in order of first appearance)."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = list(names or [])
        self._ids = {name: i for i, name in enumerate(self.names)}
        if len(self._ids) != len(self.names):
            raise ValueError("an id dictionary cannot hold the same name twice")

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The id of every value (int32), giving new names the next ids in order of appearance.

        Only the column's distinct values are looked up in Python: a 10,000-row chunk has a few
        thousand, and the per-row mapping is one numpy take.
        """
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        encoded = pc.dictionary_encode(values)
        distinct = encoded.dictionary.to_pylist()
        ids = list(map(self._ids.get, distinct))
        if None in ids:
            ids = [self._add(name) if i is None else i for name, i in zip(distinct, ids, strict=True)]
        return np.asarray(ids, dtype=np.int32)[encoded.indices.to_numpy(zero_copy_only=False)]

    def _add(self, name: str) -> int:
        new = self._ids[name] = len(self.names)
        self.names.append(name)
        return new

    def lookup(self, names: list[str]) -> np.ndarray:
        """Ids of names that must already be known (``KeyError`` otherwise)."""
        return np.fromiter((self._ids[name] for name in names), dtype=np.int32, count=len(names))

    def to_table(self) -> pa.Table:
        return pa.table({"name": pa.array(self.names, pa.string())}, schema=NAMES_SCHEMA)

    @classmethod
    def from_table(cls, table: pa.Table) -> IdDictionary:
        return cls(table.column("name").to_pylist())
