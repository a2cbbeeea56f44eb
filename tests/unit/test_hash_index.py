"""The hash table behind the name and pair lookups: every key found with its id, through growth
and collisions, and nothing found that was never inserted."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patternflow.engine.hash_index import HashIndex

KEYS = st.integers(0, 2**64 - 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(KEYS, max_size=50), max_size=8), st.lists(KEYS, max_size=30))
def test_every_key_inserted_is_found_with_its_id_and_no_other(batches, others):
    index, known = HashIndex(), {}
    for batch in batches:
        new = list(dict.fromkeys(k for k in batch if k not in known))
        index.insert(np.array(new, dtype=np.uint64), np.arange(len(known), len(known) + len(new), dtype=np.int32))
        known.update((k, len(known)) for k in new)
        asked = [*known, *others]
        expected = [known.get(k, -1) for k in asked]
        assert index.lookup(np.array(asked, dtype=np.uint64)).tolist() == expected
    assert index.size == len(known)


def test_keys_that_share_slots_and_hashes_are_told_apart_by_the_callers_check():
    """Many keys in a small table probe on past each other; two ids of one hash are told apart by
    ``same`` (as names whose hashes collide are, by their bytes)."""
    index = HashIndex()
    hashes = np.array([5, 5, 5, 7, 5], dtype=np.uint64)  # ids 0, 1, 2, 4 share a hash
    names = ["a", "b", "c", "d", "e"]
    index.insert(hashes, np.arange(5, dtype=np.int32))
    asked = ["e", "a", "d", "c", "x"]
    asked_hashes = np.array([5, 5, 7, 5, 5], dtype=np.uint64)

    def same(ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.array([names[i] == asked[p] for i, p in zip(ids, positions, strict=True)], dtype=bool)

    assert index.lookup(asked_hashes, same).tolist() == [4, 0, 3, 2, -1]


def test_ids_go_in_in_order():
    index = HashIndex()
    index.insert(np.array([1, 2], dtype=np.uint64), np.array([0, 1], dtype=np.int32))
    with pytest.raises(ValueError, match="in order"):
        index.insert(np.array([3], dtype=np.uint64), np.array([5], dtype=np.int32))


def test_a_batch_larger_than_one_placement_block_is_found_whole():
    """A stream's start inserts millions of pairs at once: they are placed a block at a time."""
    from patternflow.engine import hash_index

    keys = np.unique(np.random.default_rng(7).integers(0, 2**63, size=3 * hash_index._PLACED_AT_ONCE + 5, dtype=np.uint64))
    index = HashIndex()
    index.insert(keys, np.arange(len(keys), dtype=np.int32))
    assert np.array_equal(index.lookup(keys), np.arange(len(keys), dtype=np.int32))
    assert (index.lookup(keys + np.uint64(1))[~np.isin(keys + np.uint64(1), keys)] == -1).all()
