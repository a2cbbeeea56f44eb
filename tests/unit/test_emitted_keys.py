"""The emitted keys kept by pair and by merchant give what a set of (pattern, customer, merchant) does."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from patternflow.engine.emitted_keys import NO_CUSTOMER, EmittedKeys

PATTERNS = ("PatId1", "PatId2", "PatId3")
KEY = st.tuples(st.sampled_from(PATTERNS), st.integers(-1, 6), st.integers(0, 3))  # customer -1: none


def pair_id(customer: int, merchant: int) -> int:
    return customer * 4 + merchant if customer != NO_CUSTOMER else -1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(KEY, max_size=8), max_size=5), st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), max_size=12))
def test_the_keys_of_the_pairs_asked_are_those_added(batches, asked):
    keys, added = EmittedKeys(PATTERNS), set()
    for batch in batches:
        batch = [k for k in dict.fromkeys(batch) if k not in added]  # each key is emitted once
        keys.add([p for p, _, _ in batch], np.array([pair_id(c, m) for _, c, m in batch]), np.array([m for _, _, m in batch]))
        added |= set(batch)
        asked = list(dict.fromkeys(asked))
        found = keys.among(
            np.array([pair_id(c, m) for c, m in asked], dtype=np.int64),
            np.array([c for c, _ in asked], dtype=np.int32),
            np.array([m for _, m in asked], dtype=np.int32),
        )
        expected = {k for k in added if k[1] == NO_CUSTOMER or (k[1], k[2]) in set(asked)}
        rows = list(zip(*(found.column(n).to_pylist() for n in ("pattern_id", "customer", "merchant")), strict=True))
        assert len(rows) == len(set(rows))
        assert set(rows) == expected
    assert keys.count == len(added)
