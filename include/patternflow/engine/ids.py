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

from patternflow.ingest import columns

NAMES_SCHEMA = pa.schema([("name", pa.string())])


class IdDictionary:
    """Name <-> dense id (0, 1, 2, ... in order of first appearance)."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = list(names or [])
        self._ids = {name: i for i, name in enumerate(self.names)}
        if len(self._ids) != len(self.names):
            raise ValueError("an id dictionary cannot hold the same name twice")
        self._array = columns.strings(self.names)
        """The names as Arrow, for ``encode``'s vectorised lookup."""

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The id of every value (int32), giving new names the next ids in order of appearance.

        The lookup is Arrow's hash join of the values against the known names (``index_in``),
        with no Python object per row; only names met for the first time go through Python.
        """
        if values.type != pa.string():  # e.g. large_string: the known names are string
            values = values.cast(pa.string())
        ids = pc.index_in(values, value_set=self._array)
        if ids.null_count:
            new = pc.unique(pc.filter(values, pc.is_null(ids)))  # in order of first appearance
            for name in new.to_pylist():
                self._ids[name] = len(self.names)
                self.names.append(name)
            self._array = pa.concat_arrays([self._array, new])
            ids = pc.index_in(values, value_set=self._array)
        return columns.to_numpy(ids).astype(np.int32, copy=False)

    def lookup(self, names: list[str]) -> np.ndarray:
        """Ids of names that must already be known (``KeyError`` otherwise)."""
        return np.fromiter((self._ids[name] for name in names), dtype=np.int32, count=len(names))

    def to_table(self) -> pa.Table:
        return columns.table({"name": self.names}, NAMES_SCHEMA)

    @classmethod
    def from_table(cls, table: pa.Table) -> IdDictionary:
        return cls(table.column("name").to_pylist())
