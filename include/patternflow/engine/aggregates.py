"""The engine's aggregate state as columns: one row per (merchant, customer) pair, by dense id.

The rows are numpy columns that grow by doubling, so adding a chunk's per-pair sums (computed
by ``sql/fold_chunk.sql``) is a handful of vectorised writes, and the pattern queries receive
Arrow tables of just the rows that can newly qualify. Per merchant it also keeps the totals and
the clear-female / clear-male customer counts, updated pair by pair from the genders before and
after each fold, so that no query has to recount them over all pairs.

UPGRADE's two thresholds are order statistics of a merchant's customers (see
``sql/pattern_upgrade.sql``), and recomputing them from every pair of the largest merchants after
each chunk was the engine's main cost, growing with the state. They are kept incrementally
instead, each from a small structure that a fold changes only where the chunk did:

- counts: per merchant, a histogram of n(c, m) over its customers. A fold moves each touched
  pair from its old count's bucket to its new one, and the k-th smallest count is where the
  histogram's running sum reaches k (a few hundred buckets, not thousands of pairs).
- weights: weight ranks never change (they are fixed when the stream starts), and a pair joins
  the merchant's customers only once, at its first transaction. The weighted pairs are sorted by
  (merchant, rank) once; a 0/1 count per sorted position marks the customers, in a Fenwick tree
  (``patternflow.engine.fenwick``), and the k-th smallest rank is the position where the
  merchant's running sum reaches k: about log2(pairs) steps, not a sum over the merchant's
  pairs. The pairs whose rank is at most W10 are then a prefix of the merchant's sorted run.

A commit writes what changed since the last one (``patternflow.engine.state``): the aggregates
mark the pairs a fold changes, so that the changes are read off those marks (``changes``), never
found by comparing two copies of every pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa

from patternflow.engine.fenwick import FenwickTree
from patternflow.engine.hash_index import HashIndex
from patternflow.ingest import columns

PAIRS_SCHEMA = pa.schema(
    [
        ("merchant", pa.int32()),  # merchant id (patternflow.engine.ids)
        ("customer", pa.int32()),  # customer id
        ("n", pa.int64()),  # n(c, m): transactions of the customer with the merchant
        ("cents", pa.int64()),  # their total amount, in cents (exact)
        ("genders", pa.uint8()),  # bit set of the genders seen: 1 = F, 2 = M, 4 = anything else
        ("weight_rank", pa.int32()),  # rank of weight(c, m) among the merchant's; -1: undefined
    ]
)
MERCHANTS_SCHEMA = pa.schema(
    [
        ("merchant", pa.int32()),
        ("clear_female", pa.int64()),  # customers whose every transaction with m is F
        ("clear_male", pa.int64()),  # likewise M
    ]
)
_CANDIDATE_OWN_COLUMNS = ("merchant", "customer", "n", "cents", "weight_rank")
CANDIDATES_SCHEMA = pa.schema(
    [PAIRS_SCHEMA.field(name) for name in _CANDIDATE_OWN_COLUMNS]
    + [
        ("merchant_total", pa.int64()),  # total(m): transactions with the merchant
        ("merchant_p90_n", pa.int64()),  # UPGRADE thresholds (UpgradeThresholds), 0 at the merchants
        ("merchant_w10_rank", pa.int32()),  # not over UPGRADE's size
    ]
)
"""Pairs that can newly qualify, with their merchant's columns (see ``PairAggregates.inputs``)."""
FEMALE, MALE, OTHER_GENDER = 1, 2, 4


@dataclass(frozen=True)
class UpgradeThresholds:
    """UPGRADE's thresholds at some merchants, and the pairs that can meet them."""

    merchants: np.ndarray
    p90_n: np.ndarray
    """Per merchant: the least count n(c, m) that is >= P90 (an order statistic, see below)."""
    w10_rank: np.ndarray
    """Per merchant: the greatest weight rank that is <= W10; 0 when no customer has a weight."""
    pairs: np.ndarray
    """Ids of the pairs that meet the thresholds now and, their counts as they are, did not meet
    the last call's: at the merchants whose thresholds loosened (see ``upgrade_thresholds``)."""


class PairAggregates:
    """Per-pair and per-merchant aggregates, with the pair id of every (customer, merchant)."""

    def __init__(self, pairs: pa.Table, customers: int, merchants: int) -> None:
        self.size = pairs.num_rows
        self._columns = {name: _grown(columns.to_numpy(pairs.column(name)), max(16, self.size)) for name in PAIRS_SCHEMA.names}
        self._index = PairIndex(customers, merchants)
        self._index.add(self.live("customer"), self.live("merchant"), np.arange(self.size, dtype=np.int32))
        self.merchants = merchants
        self.total = np.zeros(max(4, merchants), dtype=np.int64)
        self.clear_female = np.zeros_like(self.total)
        self.clear_male = np.zeros_like(self.total)
        merchant, genders, n = self.live("merchant"), self.live("genders"), self.live("n")
        np.add.at(self.total, merchant, n)
        np.add.at(self.clear_female, merchant, genders == FEMALE)
        np.add.at(self.clear_male, merchant, genders == MALE)
        # counts: count_histogram[m, k] = customers of m with n(c, m) = k (column 0 unused)
        customer = n >= 1
        self.count_histogram = np.zeros((len(self.total), _capacity(int(n.max(initial=0)) + 1)), dtype=np.int64)
        np.add.at(self.count_histogram, (merchant[customer], n[customer]), 1)
        # weights: the weighted pairs by (merchant, rank); ranks are fixed for the whole stream
        rank = self.live("weight_rank")
        weighted = np.flatnonzero(rank >= 0).astype(np.int32)
        self._by_rank = weighted[np.lexsort((rank[weighted], merchant[weighted]))]
        self._sorted_ranks = rank[self._by_rank]
        self._runs = np.searchsorted(merchant[self._by_rank], np.arange(merchants + 1))
        self._position = np.full(self.size, -1, dtype=np.int32)  # of a weighted pair in _by_rank
        self._position[self._by_rank] = np.arange(len(self._by_rank), dtype=np.int32)
        self._customers_by_rank = FenwickTree(customer[self._by_rank])
        """1 at each position of ``_by_rank`` that is a customer (n >= 1)."""
        self._last_thresholds: dict[int, tuple[int, int]] = {}
        """merchant -> (p90_n, w10_rank) at the last ``upgrade_thresholds`` call."""
        self._changed = np.zeros(len(self._columns["n"]), dtype=bool)
        """Pairs whose values changed since ``mark_unchanged`` (one byte a pair: bounded however
        long a session goes between commits)."""
        self._genders_changed = False
        self._marked_size = self.size

    def live(self, name: str) -> np.ndarray:
        """Column ``name`` of the live rows (a view, not a copy)."""
        return self._columns[name][: self.size]

    def pair_ids(self, customers: np.ndarray, merchants: np.ndarray, customer_count: int, merchant_count: int) -> np.ndarray:
        """The pair id of each (customer, merchant) row; pairs met for the first time are added
        with no transactions and no weight, in (customer, merchant) order."""
        self._reserve_ids(customer_count, merchant_count)
        pairs = self._index.lookup(customers, merchants)
        missing = pairs < 0
        if missing.any():
            new = np.unique(_pair_keys(customers[missing], merchants[missing]))
            first = self.size
            new_customers, new_merchants = (new >> 32).astype(np.int32), (new & 0xFFFFFFFF).astype(np.int32)
            self._append(new_customers, new_merchants)
            self._index.add(new_customers, new_merchants, np.arange(first, self.size, dtype=np.int32))
            pairs[missing] = self._index.lookup(customers[missing], merchants[missing])
        return pairs

    def known_pair_ids(self, customers: np.ndarray, merchants: np.ndarray) -> np.ndarray:
        """The pair id of each (customer, merchant), -1 for a pair never met."""
        return self._index.lookup(customers, merchants)

    def add(self, pair: np.ndarray, n: np.ndarray, cents: np.ndarray, genders: np.ndarray) -> None:
        """Add a chunk's per-pair sums (each pair at most once) to the state."""
        columns = self._columns
        merchant = columns["merchant"][pair]
        before = columns["genders"][pair]
        after = before | genders
        old_n = columns["n"][pair]
        new_n = old_n + n
        columns["n"][pair] = new_n
        columns["cents"][pair] += cents
        columns["genders"][pair] = after
        np.add.at(self.total, merchant, n)
        self._changed[pair] = True
        changed = before != after
        if changed.any():
            self._genders_changed |= bool((pair[changed] < self._marked_size).any())
            merchant_changed, before, after = merchant[changed], before[changed], after[changed]
            np.add.at(self.clear_female, merchant_changed, (after == FEMALE).astype(np.int64) - (before == FEMALE))
            np.add.at(self.clear_male, merchant_changed, (after == MALE).astype(np.int64) - (before == MALE))
        self._count_moves(merchant, old_n, new_n)
        first = pair[old_n == 0]
        if len(first):
            positions = self._position[first[first < len(self._position)]]
            self._customers_by_rank.add(positions[positions >= 0])

    def _count_moves(self, merchant: np.ndarray, old_n: np.ndarray, new_n: np.ndarray) -> None:
        """Move each pair of ``merchant`` from the bucket of its old count to its new one."""
        width = self.count_histogram.shape[1]
        if len(new_n) and new_n.max() >= width:
            self.count_histogram = _grown_columns(self.count_histogram, _capacity(int(new_n.max()) + 1))
        buckets = _flat(self.count_histogram)  # ufunc.at with 2-d indexes is several times slower
        row = merchant.astype(np.int64) * self.count_histogram.shape[1]
        np.add.at(buckets, row + new_n, 1)
        known = old_n >= 1
        np.subtract.at(buckets, row[known] + old_n[known], 1)

    def upgrade_thresholds(self, merchants: np.ndarray, count_quantile: Decimal, weight_quantile: Decimal) -> UpgradeThresholds:
        """UPGRADE's thresholds at ``merchants`` (each with at least one customer), as order
        statistics, and the pairs that the change of thresholds since the last call can qualify.

        With a merchant's N values sorted, x_1 <= ... <= x_N, and h = (N - 1) * q (exact):
        v >= quantile_cont(q) <=> v >= x_(ceil(h) + 1), and v <= quantile_cont(q) <=> v <= x_(floor(h) + 1),
        since no value lies strictly between x_(floor(h) + 1) and x_(ceil(h) + 1).

        A pair the chunk did not touch keeps its count, so it can only newly qualify when its
        merchant's thresholds loosened: its count is now >= P90 and was below the last call's,
        or its rank is now <= W10 and was above the last call's. Those pairs are returned, and
        every qualifying pair of a merchant that was not among the last call's. The last call's
        thresholds are not part of the state: after a restart every qualifying pair is returned once.
        """
        merchants = np.asarray(merchants, dtype=np.int64)
        counts = np.cumsum(self.count_histogram[merchants], axis=1)  # a few hundred buckets a merchant
        wanted = [_order_statistic(int(total), count_quantile, above=True) for total in counts[:, -1].tolist()]
        p90 = (counts < np.array(wanted, dtype=np.int64)[:, None]).sum(axis=1)
        weighted = merchants + 1 < len(self._runs)  # a merchant met after the stream's start has no weights
        first, end = np.zeros(len(merchants), dtype=np.int64), np.zeros(len(merchants), dtype=np.int64)
        first[weighted], end[weighted] = self._runs[merchants[weighted]], self._runs[merchants[weighted] + 1]
        before, customers = np.zeros(len(merchants), dtype=np.int64), np.zeros(len(merchants), dtype=np.int64)
        if weighted.any():
            before[weighted] = self._customers_by_rank.prefix(first[weighted])
            customers[weighted] = self._customers_by_rank.prefix(end[weighted]) - before[weighted]
        w10 = np.zeros(len(merchants), dtype=np.int32)
        ranked = np.flatnonzero(customers > 0)
        if len(ranked):
            k = [_order_statistic(int(c), weight_quantile, above=False) for c in customers[ranked].tolist()]
            w10[ranked] = self._sorted_ranks[self._customers_by_rank.position_of(before[ranked] + np.array(k, dtype=np.int64))]
        last, self._last_thresholds = self._last_thresholds, {}
        found = []
        for i, m in enumerate(merchants.tolist()):
            now = (int(p90[i]), int(w10[i]))
            self._last_thresholds[m] = now
            was = last.get(m)
            if now[1] and (was is None or now[0] < was[0] or now[1] > was[1]):
                found.append(self._newly_within(int(first[i]), int(end[i]), now, was))
        pairs = np.concatenate(found) if found else np.empty(0, dtype=np.int32)
        return UpgradeThresholds(merchants, p90, w10, pairs)

    def _newly_within(self, first: int, end: int, now: tuple[int, int], was: tuple[int, int] | None) -> np.ndarray:
        """The weighted pairs at positions first .. end-1 of ``_by_rank`` (one merchant) that meet
        the thresholds ``now`` = (p90_n, w10_rank) and, with their counts as they are, did not
        meet ``was`` (None: every pair that meets ``now``)."""
        ranks = self._sorted_ranks[first:end]
        n = self._columns["n"]
        least_n = max(1, now[0])

        def meeting(pairs: np.ndarray, below_n: int | None = None) -> np.ndarray:
            counts = n[pairs]
            keep = counts >= least_n
            if below_n is not None:
                keep &= counts < below_n
            return pairs[keep]

        within = first + int(np.searchsorted(ranks, now[1], side="right"))
        if was is None:
            return meeting(self._by_rank[first:within])
        # ranks already within the last W10: qualify now only by a fall of P90
        kept = first + int(np.searchsorted(ranks, min(now[1], was[1]), side="right"))
        by_count = meeting(self._by_rank[first:kept], below_n=was[0]) if now[0] < was[0] else np.empty(0, dtype=np.int32)
        return np.concatenate([by_count, meeting(self._by_rank[kept:within])])  # ranks newly within W10

    def inputs(self, pair: np.ndarray, upgrade: UpgradeThresholds) -> tuple[pa.Table, pa.Table]:
        """The pattern queries' two inputs: the given pairs (``CANDIDATES_SCHEMA``), each with its
        merchant's total and UPGRADE thresholds beside its own values so that no query needs a
        join, and every merchant's gender counts (``MERCHANTS_SCHEMA``)."""
        m = self.merchants
        p90, w10 = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int32)
        p90[upgrade.merchants], w10[upgrade.merchants] = upgrade.p90_n, upgrade.w10_rank
        total = self.total[:m]
        merchants = columns.from_columns([np.arange(m, dtype=np.int32), self.clear_female[:m], self.clear_male[:m]], MERCHANTS_SCHEMA)
        own = [self._columns[name][pair] for name in _CANDIDATE_OWN_COLUMNS]
        merchant = own[_CANDIDATE_OWN_COLUMNS.index("merchant")]
        theirs = [total[merchant], p90[merchant], w10[merchant]]  # merchant_total, merchant_p90_n, merchant_w10_rank
        return columns.from_columns(own + theirs, CANDIDATES_SCHEMA), merchants

    def to_table(self) -> pa.Table:
        return columns.table({name: self.live(name).copy() for name in PAIRS_SCHEMA.names}, PAIRS_SCHEMA)

    def mark_unchanged(self) -> None:
        """Take the aggregates as they are now as the base that ``changes`` is measured from."""
        self._changed[:] = False
        self._genders_changed = False
        self._marked_size = self.size

    def changes(self) -> tuple[pa.Table, np.ndarray, pa.Table]:
        """What changed since ``mark_unchanged``: the pairs added since (whole rows), and the ids of
        the pairs before it whose values changed with those values (n and cents, which every fold
        of a pair changes, and genders when any changed)."""
        base = self._marked_size
        appended = columns.table({name: self._columns[name][base : self.size].copy() for name in PAIRS_SCHEMA.names}, PAIRS_SCHEMA)
        rows = np.flatnonzero(self._changed[:base]).astype(np.int32)
        names = ("n", "cents", "genders") if self._genders_changed else ("n", "cents")
        updated = columns.table({name: self._columns[name][rows] for name in names}, pa.schema([PAIRS_SCHEMA.field(n) for n in names]))
        return appended, rows, updated

    def _reserve_ids(self, customers: int, merchants: int) -> None:
        self._index.reserve(customers, merchants)
        if merchants > len(self.total):
            for name in ("total", "clear_female", "clear_male", "count_histogram"):
                setattr(self, name, _grown(getattr(self, name), _capacity(merchants)))
        self.merchants = max(self.merchants, merchants)

    def _append(self, customers: np.ndarray, merchants: np.ndarray) -> None:
        first, self.size = self.size, self.size + len(customers)
        for name, column in self._columns.items():
            column = self._columns[name] = with_room(column, self.size)
            column[first : self.size] = 0
        self._changed = with_room(self._changed, self.size)
        self._columns["customer"][first : self.size] = customers
        self._columns["merchant"][first : self.size] = merchants
        self._columns["weight_rank"][first : self.size] = -1


_DENSE_CELLS = 1 << 24
"""Most (customer, merchant) cells a dense pair index holds (64 MB)."""


class PairIndex:
    """The pair id of each (customer, merchant), -1 for none.

    A dense matrix while customers x merchants stays within ``_DENSE_CELLS``: a stream has few
    merchants (BankSim: 50, ten times its customers still 2 M cells), and every lookup is then
    one vectorised index. Beyond that, a hash table of the pairs' 64-bit keys (``HashIndex``), so
    that memory follows the pairs met, not every possible pair, and a lookup costs about one
    probe a row however many pairs there are.
    """

    def __init__(self, customers: int, merchants: int) -> None:
        self._dense: np.ndarray | None = np.full((16, 16), -1, dtype=np.int32)
        self._hashed = HashIndex()  # when not dense
        self.reserve(customers, merchants)

    def reserve(self, customers: int, merchants: int) -> None:
        """Room for ids below ``customers`` and ``merchants``."""
        if self._dense is None:
            return
        rows, cols = self._dense.shape
        if customers <= rows and merchants <= cols:
            return
        shape = (max(rows, _capacity(customers)), max(cols, _capacity(merchants)))
        if shape[0] * shape[1] > _DENSE_CELLS:
            customer, merchant = np.nonzero(self._dense >= 0)
            ids = self._dense[customer, merchant]
            self._dense = None
            order = np.argsort(ids)  # ids go into the hash table in order
            self.add(customer[order].astype(np.int32), merchant[order].astype(np.int32), ids[order])
            return
        grown = np.full(shape, -1, dtype=np.int32)
        grown[:rows, :cols] = self._dense
        self._dense = grown

    def lookup(self, customers: np.ndarray, merchants: np.ndarray) -> np.ndarray:
        if self._dense is not None:
            # flat indexes into the matrix: several times faster than a 2-d lookup
            return _flat(self._dense)[customers.astype(np.int64) * self._dense.shape[1] + merchants]
        return self._hashed.lookup(_pair_keys(customers, merchants))  # a key is exact: its own hash

    def add(self, customers: np.ndarray, merchants: np.ndarray, ids: np.ndarray) -> None:
        """New pairs (none already known), their ids the next ones in order."""
        if self._dense is not None:
            self._dense[customers, merchants] = ids
            return
        self._hashed.insert(_pair_keys(customers, merchants), ids)


def _pair_keys(customers: np.ndarray, merchants: np.ndarray) -> np.ndarray:
    """One 64-bit key a pair, in (customer, merchant) order."""
    return (customers.astype(np.int64) << 32) | merchants.astype(np.int64)


def _order_statistic(count: int, quantile: Decimal, above: bool) -> int:
    """The 1-based index k of x_k that decides v >= quantile_cont(q) (``above``) or v <= it, for
    ``count`` values: ceil(h) + 1 or floor(h) + 1 with h = (count - 1) * q, in exact integers."""
    numerator, denominator = quantile.as_integer_ratio()
    h_floor, remainder = divmod((count - 1) * numerator, denominator)
    return h_floor + (1 if above and remainder else 0) + 1


def with_room(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` itself when it has ``size`` rows, else a copy grown to the next power of two
    (the new rows zero): growing by doubling keeps appending a row O(1) on average."""
    return values if size <= len(values) else _grown(values, _capacity(size))


def _capacity(needed: int) -> int:
    return 1 << max(4, (needed - 1).bit_length())


def _grown(values: np.ndarray, capacity: int) -> np.ndarray:
    """A copy of ``values`` with room for ``capacity`` rows (the rest zero)."""
    out = np.zeros((max(capacity, len(values)), *values.shape[1:]), dtype=values.dtype)
    out[: len(values)] = values
    return out


def _flat(values: np.ndarray) -> np.ndarray:
    """A 1-d view of the C-contiguous ``values``: writes to it go to ``values``."""
    if not values.flags.c_contiguous:
        raise ValueError("a flat view needs a C-contiguous array")
    return values.reshape(-1)


def _grown_columns(values: np.ndarray, capacity: int) -> np.ndarray:
    """A copy of the 2-d ``values`` with room for ``capacity`` columns (the rest zero)."""
    out = np.zeros((len(values), capacity), dtype=values.dtype)
    out[:, : values.shape[1]] = values
    return out
