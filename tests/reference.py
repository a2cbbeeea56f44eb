"""A deliberately simple reference implementation of the detection contract, for differential tests.

It recomputes everything from the raw history after every chunk with pandas and exact fractions
(quantile_cont interpolated literally), sharing no code with the engine.
"""

from __future__ import annotations

from fractions import Fraction
from math import ceil, floor

import pandas as pd

from patternflow.engine.config import DetectionConfig


def quantile_cont(values: list, q: Fraction) -> Fraction:
    xs = sorted(Fraction(v) for v in values)
    h = (len(xs) - 1) * q
    lo, hi = floor(h), ceil(h)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def reference_sequence(transactions: pd.DataFrame, importance: pd.DataFrame, config: DetectionConfig) -> list[tuple]:
    """Every detection once, in output order, as (chunk, patternId, ActionType, customerName, MerchantId).

    ``transactions`` has columns customer, merchant, gender, cents; ``importance`` Source, Target, cents.
    """
    weights = {(c, m): Fraction(int(g.sum()), 100 * len(g)) for (c, m), g in importance.groupby(["Source", "Target"])["cents"]}
    q90, q10 = Fraction(config.upgrade_count_quantile), Fraction(config.upgrade_weight_quantile)
    max_avg = Fraction(config.child_max_average_amount)
    emitted: set[tuple] = set()
    sequence = []
    chunks = -(-len(transactions) // config.chunk_size)
    for k in range(chunks):
        history = transactions.iloc[: (k + 1) * config.chunk_size]
        found = set()
        for merchant, rows in history.groupby("merchant"):
            per_customer = rows.groupby("customer")
            n = per_customer.size()
            cents = per_customer["cents"].sum()
            genders = per_customer["gender"].agg(lambda g: frozenset(g))
            if len(rows) > config.upgrade_min_merchant_transactions:
                p90 = quantile_cont(list(n), q90)
                defined = {c: weights[(c, merchant)] for c in n.index if (c, merchant) in weights}
                if defined:
                    w10 = quantile_cont(list(defined.values()), q10)
                    for c in n.index:
                        if n[c] >= p90 and c in defined and defined[c] <= w10:
                            found.add(("PatId1", "UPGRADE", c, merchant))
            for c in n.index:
                if n[c] >= config.child_min_transactions and Fraction(int(cents[c]), 100 * int(n[c])) < max_avg:
                    found.add(("PatId2", "CHILD", c, merchant))
            female = sum(1 for g in genders if g == frozenset({"F"}))
            male = sum(1 for g in genders if g == frozenset({"M"}))
            if female < male and female > config.dei_min_female_customers:
                found.add(("PatId3", "DEI-NEEDED", "", merchant))
        new = sorted(found - emitted, key=lambda d: (d[0], d[3], d[2]))
        emitted |= set(new)
        sequence += [(k, *d) for d in new]
    return sequence


def cut_files(rows: list, size: int) -> list[list]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]
