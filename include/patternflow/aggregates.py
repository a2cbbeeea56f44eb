"""The engine's aggregate state as columns: one row per (merchant, customer) pair, by dense id.

The rows are numpy columns that grow by doubling, so adding a chunk's per-pair sums (computed
by ``sql/fold_chunk.sql``) is a handful of vectorised writes, and the pattern queries receive
zero-copy Arrow views of just the rows they need. Per merchant it also keeps the totals and the
clear-female / clear-male customer counts, updated pair by pair from the genders before and
after each fold, so that no query has to recount them over all pairs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

PAIRS_SCHEMA = pa.schema(
    [
        ("merchant", pa.int32()),  # merchant id (patternflow.ids)
        ("customer", pa.int32()),  # customer id
        ("n", pa.int64()),  # n(c, m): transactions of the customer with the merchant
        ("cents", pa.int64()),  # their total amount, in cents (exact)
        ("genders", pa.uint8()),  # bit set of the genders seen: 1 = F, 2 = M, 4 = anything else
        ("weight_rank", pa.int32()),  # rank of weight(c, m) among the merchant's; -1: undefined
    ]
)
FEMALE, MALE, OTHER_GENDER = 1, 2, 4


class PairAggregates:
    """Per-pair and per-merchant aggregates, with the pair id of every (customer, merchant)."""

    def __init__(self, pairs: pa.Table, customers: int, merchants: int) -> None:
        self.size = pairs.num_rows
        self._columns = {name: _grown(pairs.column(name).to_numpy(), max(16, self.size)) for name in PAIRS_SCHEMA.names}
        # pair id of (customer, merchant), -1 for none: a dense matrix, since a stream has few
        # merchants (BankSim: 50) and every lookup is then one vectorised index.
        self._pair_of = np.full((max(16, customers), max(4, merchants)), -1, dtype=np.int32)
        self._pair_of[self.live("customer"), self.live("merchant")] = np.arange(self.size, dtype=np.int32)
        self.merchants = merchants
        self.total = np.zeros(max(4, merchants), dtype=np.int64)
        self.clear_female = np.zeros_like(self.total)
        self.clear_male = np.zeros_like(self.total)
        merchant, genders = self.live("merchant"), self.live("genders")
        np.add.at(self.total, merchant, self.live("n"))
        np.add.at(self.clear_female, merchant, genders == FEMALE)
        np.add.at(self.clear_male, merchant, genders == MALE)

    def live(self, name: str) -> np.ndarray:
        """Column ``name`` of the live rows (a view, not a copy)."""
        return self._columns[name][: self.size]

    def pair_ids(self, customers: np.ndarray, merchants: np.ndarray, customer_count: int, merchant_count: int) -> np.ndarray:
        """The pair id of each (customer, merchant) row; pairs met for the first time are added
        with no transactions and no weight."""
        self._reserve_ids(customer_count, merchant_count)
        pairs = self._pair_of[customers, merchants]
        missing = pairs < 0
        if missing.any():
            key = np.unique(customers[missing].astype(np.int64) * self._pair_of.shape[1] + merchants[missing])
            new_customers, new_merchants = (key // self._pair_of.shape[1]).astype(np.int32), (key % self._pair_of.shape[1]).astype(np.int32)
            first = self.size
            self._append(new_customers, new_merchants)
            self._pair_of[new_customers, new_merchants] = np.arange(first, self.size, dtype=np.int32)
            pairs = self._pair_of[customers, merchants]
        return pairs

    def add(self, pair: np.ndarray, n: np.ndarray, cents: np.ndarray, genders: np.ndarray) -> None:
        """Add a chunk's per-pair sums (each pair at most once) to the state."""
        columns = self._columns
        merchant = columns["merchant"][pair]
        before = columns["genders"][pair]
        after = before | genders
        columns["n"][pair] += n
        columns["cents"][pair] += cents
        columns["genders"][pair] = after
        np.add.at(self.total, merchant, n)
        changed = before != after
        if changed.any():
            merchant, before, after = merchant[changed], before[changed], after[changed]
            np.add.at(self.clear_female, merchant, (after == FEMALE).astype(np.int64) - (before == FEMALE))
            np.add.at(self.clear_male, merchant, (after == MALE).astype(np.int64) - (before == MALE))

    def rows(self, pair: np.ndarray, names: tuple[str, ...]) -> pa.Table:
        """The given rows and columns, as an Arrow table."""
        return pa.table({name: self._columns[name][pair] for name in names})

    def merchant_table(self) -> pa.Table:
        """Per merchant: id, total transactions, clear-female and clear-male customers."""
        m = self.merchants
        return pa.table(
            {
                "merchant": np.arange(m, dtype=np.int32),
                "total": self.total[:m],
                "clear_female": self.clear_female[:m],
                "clear_male": self.clear_male[:m],
            }
        )

    def pairs_of_merchants(self, merchants: np.ndarray) -> np.ndarray:
        """Ids of the pairs, with at least one transaction, of the given merchants."""
        live = self.live("n") >= 1
        if len(merchants) == 1:
            live &= self.live("merchant") == merchants[0]
        else:
            live &= np.isin(self.live("merchant"), merchants)
        return np.flatnonzero(live)

    def to_table(self) -> pa.Table:
        return pa.table({name: self.live(name).copy() for name in PAIRS_SCHEMA.names}, schema=PAIRS_SCHEMA)

    def _reserve_ids(self, customers: int, merchants: int) -> None:
        rows, cols = self._pair_of.shape
        if customers > rows or merchants > cols:
            grown = np.full((max(rows, _capacity(customers)), max(cols, _capacity(merchants))), -1, dtype=np.int32)
            grown[:rows, :cols] = self._pair_of
            self._pair_of = grown
        if merchants > len(self.total):
            for name in ("total", "clear_female", "clear_male"):
                setattr(self, name, _grown(getattr(self, name), _capacity(merchants)))
        self.merchants = max(self.merchants, merchants)

    def _append(self, customers: np.ndarray, merchants: np.ndarray) -> None:
        first, self.size = self.size, self.size + len(customers)
        for name, column in self._columns.items():
            if self.size > len(column):
                column = self._columns[name] = _grown(column, _capacity(self.size))
            column[first : self.size] = 0
        self._columns["customer"][first : self.size] = customers
        self._columns["merchant"][first : self.size] = merchants
        self._columns["weight_rank"][first : self.size] = -1


def _capacity(needed: int) -> int:
    return 1 << max(4, (needed - 1).bit_length())


def _grown(values: np.ndarray, capacity: int) -> np.ndarray:
    """A copy of ``values`` with room for ``capacity`` rows (the rest zero)."""
    out = np.zeros(max(capacity, len(values)), dtype=values.dtype)
    out[: len(values)] = values
    return out
