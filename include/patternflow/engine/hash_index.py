"""A hash table from keys to dense ids, probed for a whole batch of keys at once in numpy.

The engine looks up every row of every chunk twice: a customer by its name, then a pair by its
(customer, merchant). A Python dict costs a few cache misses and an interpreter step a name, and
a binary search over sorted keys log2(size) cache misses a row, with every insertion moving the
keys after it: both grow with the history (at 411,200 customers and 2.4 M pairs they were most of
a fold's time). Open addressing costs about one probe a key whatever the size.

The table holds ids, and each id's 64-bit hash. A pair's key fits in 64 bits and is its own
hash, exact; a name's hash is not, and its caller also compares the bytes (``Same``), so that a
name is found only when it is equal, never on a hash alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Same = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``same(ids, positions)``: whether each id's key is the key at the same place of ``positions``
(indexes into the batch looked up, in increasing order), for ids whose hash is that key's."""

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)
"""2^64 / golden ratio: multiplying by it spreads any 64-bit keys over the top bits."""


_PLACED_AT_ONCE = 1 << 18
"""Keys placed in one block of an insert: bounds its temporary arrays, not its result."""


class HashIndex:
    """Ids by 64-bit hash, with linear probing; ids are never removed.

    ``max_load``: most ids a slot before the table doubles. Each probe of a batch is a numpy step
    over the keys still probing, so the longest probe run sets the cost: at 0.7, about two probes
    find a key on average, and the longest runs of a table of millions are a few dozen.
    """

    def __init__(self, max_load: float = 0.7) -> None:
        self._max_load = max_load
        self._bits = 4
        self._slots = np.full(1 << self._bits, -1, dtype=np.int32)
        self._hashes: np.ndarray = np.empty(0, dtype=np.uint64)
        """The hash of each id inserted, by id (the table is rebuilt from them when it grows)."""
        self.size = 0

    def lookup(self, hashes: np.ndarray, same: Same | None = None) -> np.ndarray:
        """The id of the key at each place of the batch (int32), -1 where none; with no ``same``,
        a hash is the key.

        The probing compares hashes only; ``same`` is asked once for all the ids found, and a
        place whose id is not the same key (a collision of hashes) probes on from there."""
        hashes = hashes.astype(np.uint64, copy=False)
        found, slots = self._probe(hashes, np.arange(len(hashes)), self._slot(hashes))
        if same is None:
            return found
        unsure = np.flatnonzero(found >= 0)
        while len(unsure):
            wrong = unsure[~same(found[unsure], unsure)]
            found[wrong], slots[wrong] = self._probe(hashes, wrong, (slots[wrong] + 1) & (len(self._slots) - 1))
            unsure = wrong[found[wrong] >= 0]
        return found

    def _probe(self, hashes: np.ndarray, positions: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``positions``, from its slot on: the first id of its hash (-1 at the first
        free slot), and the slot where it stopped."""
        found = np.full(len(positions), -1, dtype=np.int32)
        stopped = slots.copy()
        going = np.arange(len(positions))
        while len(going):
            ids = self._slots[slots]
            used = ids >= 0
            hit = used.copy()
            hit[used] = self._hashes[ids[used]] == hashes[positions[going[used]]]
            found[going[hit]] = ids[hit]
            stopped[going[~used | hit]] = slots[~used | hit]
            on = used & ~hit  # another key's slot: probe the next one
            going, slots = going[on], (slots[on] + 1) & (len(self._slots) - 1)
        return found, stopped

    def insert(self, hashes: np.ndarray, ids: np.ndarray) -> None:
        """Add keys not in the table yet, each once, with their ids (the next ones, in order)."""
        if self.size + len(ids) > self._max_load * len(self._slots):
            self._grow(self.size + len(ids))
        if len(ids) and (ids.min() != len(self._hashes) or not np.array_equal(ids, np.arange(ids.min(), ids.min() + len(ids)))):
            raise ValueError("ids are inserted in order, each once")
        self._hashes = np.concatenate([self._hashes, hashes.astype(np.uint64, copy=False)])
        self._place(hashes, ids)
        self.size += len(ids)

    def _place(self, hashes: np.ndarray, ids: np.ndarray) -> None:
        # a block at a time: a stream's start places millions of pairs, and each step of a
        # block's probing makes a few arrays of the block's size
        for first in range(0, len(ids), _PLACED_AT_ONCE):
            self._place_block(hashes[first : first + _PLACED_AT_ONCE], ids[first : first + _PLACED_AT_ONCE])

    def _place_block(self, hashes: np.ndarray, ids: np.ndarray) -> None:
        positions = np.arange(len(ids))
        slots = self._slot(hashes)
        while len(positions):
            free = self._slots[slots] < 0
            # where several keys want one free slot, the first takes it and the others probe on
            wanted, first = np.unique(slots[free], return_index=True)
            taken = np.flatnonzero(free)[first]
            self._slots[wanted] = ids[positions[taken]]
            going_on = np.ones(len(positions), dtype=bool)
            going_on[taken] = False
            positions, slots = positions[going_on], (slots[going_on] + 1) & (len(self._slots) - 1)

    def _grow(self, size: int) -> None:
        while size > self._max_load * (1 << self._bits):
            self._bits += 1
        self._slots = np.full(1 << self._bits, -1, dtype=np.int32)
        self._place(self._hashes, np.arange(len(self._hashes), dtype=np.int32))

    def _slot(self, hashes: np.ndarray) -> np.ndarray:
        return ((hashes.astype(np.uint64, copy=False) * _FIBONACCI) >> np.uint64(64 - self._bits)).astype(np.int64)
