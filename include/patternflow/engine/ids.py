"""Dense integer ids for customer and merchant names, so that the engine works on integers.

Names are arbitrary non-empty strings (the data contract); the engine's aggregates, joins and
pattern queries run far faster on small integers. A dictionary gives each name the next id the
first time it is met and keeps it for the rest of the stream (it is part of the state), so ids
never depend on how the stream was cut into chunks or sessions.

The names are kept as one Arrow array, not as Python strings, and found by a hash of their bytes
(``patternflow.engine.hash_index``): a chunk's lookup costs what its distinct names do, however
many names the stream has met, and memory is the names' bytes and a few bytes of index a name.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from patternflow.engine.hash_index import HashIndex
from patternflow.ingest import columns, stringbytes

NAMES_SCHEMA = pa.schema([("name", pa.string())])


class IdDictionary:
    """Name <-> dense id (0, 1, 2, ... in order of first appearance)."""

    def __init__(self, names: pa.Array | pa.ChunkedArray | list[str] | None = None) -> None:
        self._array = _strings(names) if isinstance(names, pa.Array | pa.ChunkedArray) else columns.strings(names or [])
        if pc.count_distinct(self._array).as_py() != len(self._array):
            raise ValueError("an id dictionary cannot hold the same name twice")
        self._index = HashIndex(max_load=0.5)
        self._index.insert(stringbytes.hashes(self._array), np.arange(len(self._array), dtype=np.int32))

    def __len__(self) -> int:
        return len(self._array)

    def encode(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The id of every value (int32), giving new names the next ids in order of appearance.

        Only the chunk's distinct names are looked up (a chunk of 10,000 rows has a few thousand).
        """
        encoded = pc.dictionary_encode(_strings(values))
        distinct = encoded.dictionary  # in order of first appearance
        hashes = stringbytes.hashes(distinct)
        ids = self._find(distinct, hashes)
        new = np.flatnonzero(ids < 0)
        if len(new):
            first = len(self._array)
            ids[new] = np.arange(first, first + len(new), dtype=np.int32)
            self._add(distinct.take(columns.from_numpy(new, pa.int64())), hashes[new])
        return ids[columns.to_numpy(encoded.indices)]

    def lookup(self, names: list[str]) -> np.ndarray:
        """Ids of names that must already be known (``KeyError`` otherwise)."""
        asked = columns.strings(names)
        ids = self._find(asked, stringbytes.hashes(asked))
        if (ids < 0).any():
            raise KeyError(names[int(np.flatnonzero(ids < 0)[0])])
        return ids

    def names_of(self, ids: np.ndarray | list[int]) -> list[str]:
        """The names of the given ids."""
        return self._array.take(columns.from_numpy(np.asarray(ids, dtype=np.int32), pa.int32())).to_pylist()

    def _find(self, distinct: pa.Array, hashes: np.ndarray) -> np.ndarray:
        """The id of each of the ``distinct`` names (their ``hashes`` given), -1 for a name not met before."""

        def same(ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
            known = self._array.take(columns.from_numpy(ids, pa.int32()))
            # positions are in order: all of them when every name was found (most chunks)
            asked = distinct if len(positions) == len(distinct) else distinct.take(columns.from_numpy(positions, pa.int64()))
            return columns.to_numpy(pc.cast(pc.equal(known, asked), pa.uint8())).astype(bool)  # no pandas

        return self._index.lookup(hashes, same)

    def _add(self, new: pa.Array, hashes: np.ndarray) -> None:
        """Give names not met before (their ``hashes`` given) the next ids."""
        first = len(self._array)
        self._index.insert(hashes, np.arange(first, first + len(new), dtype=np.int32))
        self._array = pa.concat_arrays([self._array, new])

    def to_table(self) -> pa.Table:
        return pa.Table.from_arrays([self._array], schema=NAMES_SCHEMA)  # no copy

    @classmethod
    def from_table(cls, table: pa.Table) -> IdDictionary:
        return cls(table.column("name"))


def _strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` as one string array (the names' type; e.g. large_string is cast)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if values.type != pa.string():
        values = values.cast(pa.string())
    return values
