"""The counts behind UPGRADE's W10: prefix sums and k-th-one positions against a plain running sum."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from patternflow.engine.fenwick import FenwickTree


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 3), max_size=70),
    st.lists(st.lists(st.integers(0, 69), max_size=10), max_size=5),
)
def test_sums_and_positions_follow_every_update(counts, updates):
    tree, expected = FenwickTree(np.array(counts, dtype=np.int64)), np.array(counts, dtype=np.int64)
    for batch in [[], *updates]:
        batch = [p for p in batch if p < len(expected)]
        tree.add(np.array(batch, dtype=np.int64))
        np.add.at(expected, batch, 1)  # a position repeated in a batch counts twice
        running = np.concatenate([[0], np.cumsum(expected)])
        ends = np.arange(len(expected) + 1)
        assert tree.prefix(ends).tolist() == running.tolist()
        ks = np.arange(1, running[-1] + 1)
        # the least position whose running sum, itself included, reaches k
        assert tree.position_of(ks).tolist() == np.searchsorted(running[1:], ks).tolist()


def test_an_empty_tree_answers_empty_batches():
    tree = FenwickTree(np.zeros(0, dtype=np.int64))
    tree.add(np.zeros(0, dtype=np.int64))
    assert tree.prefix(np.zeros(1, dtype=np.int64)).tolist() == [0]
    assert tree.position_of(np.zeros(0, dtype=np.int64)).tolist() == []
