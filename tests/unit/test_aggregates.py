"""UPGRADE's incrementally kept order statistics against a direct computation from the pairs."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from patternflow.engine.aggregates import PAIRS_SCHEMA, PairAggregates, _order_statistic


def quantile_cont(values: list, q: Decimal) -> Fraction:
    """Linear interpolation between closest ranks, in exact fractions."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * Fraction(q)
    low = int(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


@given(st.lists(st.integers(0, 9), min_size=1, max_size=30), st.sampled_from(["0", "0.1", "0.5", "0.9", "0.95", "1"]))
def test_order_statistic_decides_the_quantile_comparisons(values, q):
    """For the values themselves (the only ones compared), the order statistic stands in for the quantile."""
    q = Decimal(q)
    ordered = sorted(values)
    threshold = Fraction(quantile_cont(values, q))
    at_least = ordered[_order_statistic(len(values), q, above=True) - 1]
    at_most = ordered[_order_statistic(len(values), q, above=False) - 1]
    for v in values:
        assert (v >= threshold) == (v >= at_least)
        assert (v <= threshold) == (v <= at_most)


def starting_pairs(ranks: list[list[int]]) -> pa.Table:
    """Pairs as a new stream has them: one per weighted (merchant, customer), no transactions."""
    merchant = [m for m, customers in enumerate(ranks) for _ in customers]
    customer = [c for customers in ranks for c in range(len(customers))]
    zeros = np.zeros(len(merchant), dtype=np.int64)
    columns = {"merchant": merchant, "customer": customer, "n": zeros, "cents": zeros}
    columns |= {"genders": np.zeros(len(merchant), dtype=np.uint8), "weight_rank": [r for customers in ranks for r in customers]}
    return pa.table(columns, schema=PAIRS_SCHEMA)


def expected_thresholds(table: list[dict], merchants: np.ndarray, count_q: Decimal, weight_q: Decimal) -> dict:
    """merchant -> (p90_n, w10_rank), straight from the definitions."""
    expected = {}
    for m in merchants.tolist():
        customers_of_m = [p for p in table if p["merchant"] == m and p["n"] >= 1]
        counts = [p["n"] for p in customers_of_m]
        weights = [p["weight_rank"] for p in customers_of_m if p["weight_rank"] >= 1]
        p90_n = min(c for c in counts if c >= quantile_cont(counts, count_q))
        expected[m] = (p90_n, max(w for w in weights if w <= quantile_cont(weights, weight_q)) if weights else 0)
    return expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=8), min_size=1, max_size=3),
    st.lists(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 3)), min_size=1, max_size=12), min_size=1, max_size=5),
)
# Customer 0 (rank 1, the W10) has 1 transaction against customer 1's 3 (P90 = 3); then nine new
# customers without a weight, one transaction each, bring P90 down to 1: customer 0 qualifies
# in a chunk that does not touch it.
@example(ranks=[[1, 2]], chunks=[[(0, 0), (1, 0), (1, 0), (1, 0)], [(c, 0) for c in range(2, 11)]])
# Ten customers, one transaction each, put W10 at the least rank (1); an eleventh brings it to
# the second least (2): customer 1 (rank 2) qualifies in a chunk that does not touch it.
@example(ranks=[[1, 2, *[3] * 9]], chunks=[[(c, 0) for c in range(10)], [(10, 0)]])
def test_upgrade_thresholds_follow_the_folds(ranks, chunks):
    """After every fold the thresholds equal those computed from scratch, and the pairs returned
    are pairs that qualify, among them every pair that newly qualifies without the chunk touching
    it; aggregates rebuilt from a snapshot (a resumed stream) return every pair that qualifies."""
    count_q, weight_q = Decimal("0.9"), Decimal("0.1")
    aggregates = PairAggregates(starting_pairs(ranks), 12, 4)
    qualified: set[int] = set()
    for chunk in chunks:
        customers, merchants = np.array([c for c, _ in chunk], np.int32), np.array([m for _, m in chunk], np.int32)
        pairs = aggregates.pair_ids(customers, merchants, 12, 4)
        touched, n = np.unique(pairs, return_counts=True)
        aggregates.add(touched, n, n * 100, np.ones(len(touched), np.uint8))
        table = aggregates.to_table().to_pylist()
        large = np.array(sorted({p["merchant"] for p in table if p["n"] >= 1}), dtype=np.int64)
        expected = expected_thresholds(table, large, count_q, weight_q)
        within_w10 = {i for i, p in enumerate(table) if p["merchant"] in expected and 1 <= p["weight_rank"] <= expected[p["merchant"]][1]}
        now = {i for i in within_w10 if table[i]["n"] >= max(1, expected[table[i]["merchant"]][0])}

        found = aggregates.upgrade_thresholds(large, count_q, weight_q)
        assert dict(zip(found.merchants.tolist(), zip(found.p90_n.tolist(), found.w10_rank.tolist(), strict=True), strict=True)) == expected
        assert set(found.pairs.tolist()) <= now
        assert now - qualified - set(touched.tolist()) <= set(found.pairs.tolist())
        assert len(found.pairs) == len(set(found.pairs.tolist()))
        qualified = now

        resumed = PairAggregates(aggregates.to_table(), 12, 4).upgrade_thresholds(large, count_q, weight_q)
        assert resumed.p90_n.tolist() == found.p90_n.tolist() and resumed.w10_rank.tolist() == found.w10_rank.tolist()
        assert sorted(resumed.pairs.tolist()) == sorted(now)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=30), max_size=6),
    st.integers(0, 40 * 40),
)
def test_the_pair_index_gives_the_same_ids_dense_or_sparse(chunks, dense_cells):
    """Past its budget of cells the index turns sparse (memory follows the pairs met, not every
    possible pair); the ids do not change."""
    import patternflow.engine.aggregates as aggregates

    empty = pa.Table.from_pylist([], schema=PAIRS_SCHEMA)
    ids = {}
    for cells in (aggregates._DENSE_CELLS, dense_cells):
        saved, aggregates._DENSE_CELLS = aggregates._DENSE_CELLS, cells
        try:
            state = PairAggregates(empty, 0, 0)
            seen = []
            for rows in chunks:
                customers = np.array([c for c, _ in rows], dtype=np.int32)
                merchants = np.array([m for _, m in rows], dtype=np.int32)
                known = (int(customers.max(initial=-1)) + 1, int(merchants.max(initial=-1)) + 1)
                seen.append(state.pair_ids(customers, merchants, *known).tolist())
            ids[cells] = seen
        finally:
            aggregates._DENSE_CELLS = saved
    assert ids[dense_cells] == ids[aggregates._DENSE_CELLS]
    flat = [(c, m, i) for rows, got in zip(chunks, ids[dense_cells], strict=True) for (c, m), i in zip(rows, got, strict=True)]
    assert len({(c, m) for c, m, _ in flat}) == len({i for _, _, i in flat})  # one id a pair
    assert all(i1 == i2 for c1, m1, i1 in flat for c2, m2, i2 in flat if (c1, m1) == (c2, m2))


def test_a_stream_of_many_merchants_keeps_a_sparse_index():
    empty = pa.Table.from_pylist([], schema=PAIRS_SCHEMA)
    state = PairAggregates(empty, 0, 0)
    customers = np.arange(20_000, dtype=np.int32)
    ids = state.pair_ids(customers, customers[::-1].copy(), 20_000, 20_000)  # 400 M possible pairs, 20,000 met
    assert sorted(ids.tolist()) == list(range(20_000)) and state._index._dense is None
    assert state._index._hashed.size == 20_000
