"""Hypothesis strategies shared by the engine's property tests."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from patternflow.engine.config import DetectionConfig
from tests.helpers import importance_table, transactions_table

CUSTOMERS = ["C1", "C2", "C3", "C10", "C9", "C22"]
MERCHANTS = ["M1", "M10", "M9", "M2"]


@st.composite
def small_streams(draw):
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(CUSTOMERS),
                st.sampled_from(MERCHANTS),
                st.sampled_from(["F", "F", "M", "M", "E", "U"]),
                st.integers(0, 6000).map(lambda c: Decimal(c) / 100),
            ),
            min_size=0,
            max_size=120,
        )
    )
    weights = draw(
        st.lists(
            st.tuples(st.sampled_from(CUSTOMERS), st.sampled_from(MERCHANTS), st.integers(0, 3000).map(lambda c: Decimal(c) / 100)),
            max_size=30,
        )
    )
    config = DetectionConfig(
        chunk_size=draw(st.integers(1, 25)),
        upgrade_min_merchant_transactions=draw(st.integers(0, 20)),
        upgrade_count_quantile=draw(st.sampled_from(["0.90", "0.5", "0.75", "1", "0"])),
        upgrade_weight_quantile=draw(st.sampled_from(["0.10", "0.5", "0.25", "0", "1"])),
        child_min_transactions=draw(st.integers(1, 6)),
        child_max_average_amount=draw(st.sampled_from(["23", "30", "10.5"])),
        dei_min_female_customers=draw(st.integers(0, 2)),
        rows_per_file=draw(st.integers(1, 6)),
    )
    return transactions_table(rows), importance_table(weights), config
