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
_HASHED_LOOKUP_NAMES = 100_000
"""Up to this many known names, ``encode`` looks a chunk up with Arrow's hash join."""


class IdDictionary:
    """Name <-> dense id (0, 1, 2, ... in order of first appearance)."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = list(names or [])
        self._ids = {name: i for i, name in enumerate(self.names)}
        if len(self._ids) != len(self.names):
            raise ValueError("an id dictionary cannot hold the same name twice")
        self._array = columns.strings(self.names)
        """The names as Arrow: the state's table of them, made without a Python object per name."""

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The id of every value (int32), giving new names the next ids in order of appearance.

        Two ways, by how many names are known. Up to ``_HASHED_LOOKUP_NAMES``, Arrow's hash join
        of the chunk against every known name (``index_in``) is quickest; it rebuilds that hash
        table at each chunk, though, so beyond it the chunk is dictionary-encoded and only its
        distinct names are looked up in the dict of known ones, a cost that follows the chunk.
        Measured on a 10,000-row chunk: 4,112 names known, 0.5 ms against 1.8 ms; 411,200 names
        known, 91 ms against 6.7 ms. One dict lookup a distinct name, not two (one to find the new
        names, one for the ids), took the second way from 12.7-13.4 ms to 7.6-8.6 ms a chunk at
        411,200 names on a busy machine.
        """
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if values.type != pa.string():  # e.g. large_string: the known names are string
            values = values.cast(pa.string())
        if len(self.names) <= _HASHED_LOOKUP_NAMES:
            ids = pc.index_in(values, value_set=self._array)
            if ids.null_count:
                self._add(pc.unique(pc.filter(values, pc.is_null(ids))).to_pylist())  # in order of first appearance
                ids = pc.index_in(values, value_set=self._array)
            return columns.to_numpy(ids).astype(np.int32, copy=False)
        encoded = pc.dictionary_encode(values)
        distinct = encoded.dictionary.to_pylist()  # in order of first appearance
        known = self._ids.get  # one lookup a name: at 411,200 names each costs cache misses
        ids = np.fromiter((known(name, -1) for name in distinct), dtype=np.int32, count=len(distinct))
        new = np.flatnonzero(ids < 0)
        if len(new):
            first = len(self.names)
            self._add([distinct[i] for i in new])
            ids[new] = np.arange(first, first + len(new), dtype=np.int32)
        return ids[columns.to_numpy(encoded.indices)]

    def _add(self, new: list[str]) -> None:
        """Give names not met before the next ids."""
        if not new:
            return
        for name in new:
            self._ids[name] = len(self.names)
            self.names.append(name)
        self._array = pa.concat_arrays([self._array, columns.strings(new)])

    def lookup(self, names: list[str]) -> np.ndarray:
        """Ids of names that must already be known (``KeyError`` otherwise)."""
        return np.fromiter((self._ids[name] for name in names), dtype=np.int32, count=len(names))

    def to_table(self) -> pa.Table:
        return pa.Table.from_arrays([self._array], schema=NAMES_SCHEMA)  # kept in step with ``names``: no copy

    @classmethod
    def from_table(cls, table: pa.Table) -> IdDictionary:
        return cls(table.column("name").to_pylist())
