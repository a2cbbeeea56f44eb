"""Dense ids for names, and the per-pair aggregates keyed by them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patternflow.engine.aggregates import PAIRS_SCHEMA, PairAggregates
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import DetectionEngine, initial_state
from patternflow.engine.ids import IdDictionary
from patternflow.engine.state import StateStore
from patternflow.engine.store import LocalStore
from tests.helpers import importance_table, transactions_table


def test_ids_are_given_in_order_of_first_appearance_and_kept():
    ids = IdDictionary()
    assert ids.encode(pa.array(["b", "a", "b", "c"])).tolist() == [0, 1, 0, 2]
    assert ids.encode(pa.chunked_array([["c", "d"], ["a"]])).tolist() == [2, 3, 1]
    assert names(ids) == ["b", "a", "c", "d"]
    assert ids.lookup(["d", "b"]).tolist() == [3, 0]


def test_new_names_among_known_ones_get_ids_in_order_of_first_appearance():
    ids = IdDictionary(["b", "a"])
    assert ids.encode(pa.array(["e", "a", "f", "e", "b", "f"])).tolist() == [2, 1, 3, 2, 0, 3]
    assert ids.encode(pa.array(["f", "g"])).tolist() == [3, 4]
    assert names(ids) == ["b", "a", "e", "f", "g"]
    assert ids.encode(pa.array(["g", "h"], pa.large_string())).tolist() == [4, 5]


def test_id_dictionary_round_trips_through_a_table():
    ids = IdDictionary()
    ids.encode(pa.array(["'C1'", "C 2", "é"]))
    restored = IdDictionary.from_table(ids.to_table())
    assert names(restored) == names(ids)
    assert restored.encode(pa.array(["é", "new"])).tolist() == [2, 3]


def test_pairs_are_added_on_first_sight_and_merchant_counts_follow_the_genders():
    aggregates = PairAggregates(PAIRS_SCHEMA.empty_table(), 0, 0)
    customers, merchants = np.array([0, 1, 0, 40], np.int32), np.array([0, 0, 0, 9], np.int32)
    pairs = aggregates.pair_ids(customers, merchants, 41, 10)
    assert pairs.tolist() == [0, 1, 0, 2]
    aggregates.add(np.array([0, 1, 2]), np.array([2, 1, 1]), np.array([500, 7, 1]), np.array([1, 2, 1], np.uint8))
    assert aggregates.clear_female[[0, 9]].tolist() == [1, 1]
    assert aggregates.clear_male[0] == 1 and aggregates.total[0] == 3
    aggregates.add(np.array([0]), np.array([1]), np.array([1]), np.array([2], np.uint8))  # customer 0 no longer clear
    assert aggregates.clear_female[0] == 0 and aggregates.total[0] == 4
    table = aggregates.to_table()
    assert table.column("n").to_pylist() == [3, 1, 1]
    assert table.column("cents").to_pylist() == [501, 7, 1]
    assert table.column("weight_rank").to_pylist() == [-1, -1, -1]
    again = PairAggregates(table, 41, 10)
    assert again.pair_ids(customers, merchants, 41, 10).tolist() == [0, 1, 0, 2]
    assert again.clear_male[0] == 1 and again.clear_female.tolist()[:10] == [0] * 9 + [1]


def test_weight_ranks_order_exact_fractions():
    # C1: (1 + 2) / 3 = 1; C2: 1.00; C3: 0.99 + 1.02 / 2 = 1.005; C4: 0.33 + 0.34 + 0.33 -> 1/3; C5 -1.
    weights = [("C1", "M1", "1"), ("C1", "M1", "2"), ("C1", "M1", "0"), ("C2", "M1", "1.00")]
    weights += [("C3", "M1", "0.99"), ("C3", "M1", "1.02"), ("C4", "M1", "0.33"), ("C4", "M1", "0.34")]
    weights += [("C4", "M1", "0.33"), ("C5", "M1", "-1"), ("C1", "M2", "50")]
    state = initial_state(importance_table(weights))
    customers = state.customers.column("name").to_pylist()
    merchants = state.merchants.column("name").to_pylist()
    ranks = {
        (customers[c], merchants[m]): r
        for c, m, r in zip(*(state.pairs.column(k).to_pylist() for k in ("customer", "merchant", "weight_rank")), strict=True)
    }
    assert ranks == {("C5", "M1"): 1, ("C4", "M1"): 2, ("C1", "M1"): 3, ("C2", "M1"): 3, ("C3", "M1"): 4, ("C1", "M2"): 1}


def test_ids_and_aggregates_survive_a_commit(tmp_path):
    config = DetectionConfig(chunk_size=2, child_min_transactions=1, child_max_average_amount="5")
    engine = DetectionEngine.start(importance_table([("C1", "M1", "2.50")]), config)
    engine.fold(0, transactions_table([("C1", "M1", "F", "1.00"), ("C9", "M7", "M", "7.25")]))
    state = StateStore(LocalStore(tmp_path))
    state.commit(engine.snapshot(), config)
    restored = DetectionEngine(config, state.load().state)
    assert names(restored.customers) == ["C1", "C9"] and names(restored.merchants) == ["M1", "M7"]
    restored.fold(1, transactions_table([("C9", "M7", "M", "1.00"), ("C2", "M1", "F", "3.00")]))
    snapshot = restored.snapshot()
    emitted = sorted((row["customer"], row["merchant"]) for row in snapshot.emitted.to_pylist())
    assert emitted == [("C1", "M1"), ("C2", "M1"), ("C9", "M7")]  # C9: (7.25 + 1.00) / 2 < 5
    assert snapshot.pairs.column("n").to_pylist() == [1, 2, 1]
    assert snapshot.pairs.column("cents").to_pylist() == [100, 825, 300]


def names(ids: IdDictionary) -> list[str]:
    return ids.to_table().column("name").to_pylist()


class Reference:
    """What an id dictionary must give: a Python dict, new names numbered in order of appearance."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def encode(self, values: list[str]) -> list[int]:
        return [self.ids.setdefault(value, len(self.ids)) for value in values]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.text(min_size=1, max_size=30), max_size=40), max_size=8))
def test_ids_are_those_of_a_dict_for_any_names(chunks):
    """Names of any length and alphabet (the hash reads them eight bytes at a time, so lengths
    around multiples of eight matter), any repeats, over chunks."""
    ids, reference = IdDictionary(), Reference()
    for chunk in chunks:
        assert ids.encode(pa.array(chunk, pa.string())).tolist() == reference.encode(chunk)
    assert names(ids) == list(reference.ids)
    if reference.ids:
        assert ids.lookup(list(reference.ids)[::-1]).tolist() == list(reference.ids.values())[::-1]


def test_names_whose_hashes_collide_still_get_their_own_ids(monkeypatch):
    """A hash is not a name: with every name of a length hashed alike, each still gets its id."""
    from patternflow.engine import ids as ids_module
    from patternflow.ingest import stringbytes

    hashes = stringbytes.hashes

    def by_length(values: pa.Array) -> np.ndarray:
        return hashes(pa.array(["x" * len(v) for v in values.to_pylist()], pa.string()))

    monkeypatch.setattr(ids_module.stringbytes, "hashes", by_length)
    ids, reference = IdDictionary(["ab", "ba"]), Reference()
    reference.encode(["ab", "ba"])
    for chunk in (["ba", "aa", "ab", "bb", "aa"], ["bb", "cc", "ab", "abc", "cba"]):
        assert ids.encode(pa.array(chunk)).tolist() == reference.encode(chunk)
    assert ids.lookup(["cba", "aa"]).tolist() == [reference.ids["cba"], reference.ids["aa"]]


def test_a_dictionary_of_many_names_gives_the_ids_of_a_dict():
    """Past many growths of the hash table (200,000 names), as at a hundred times BankSim's size."""
    rng = np.random.default_rng(3)
    pool = [f"'C{n}'" for n in rng.choice(10**9, size=200_000, replace=False)]
    ids, reference = IdDictionary(), Reference()
    for _ in range(5):
        chunk = [pool[i] for i in rng.integers(0, len(pool), size=60_000)]
        assert ids.encode(pa.array(chunk)).tolist() == reference.encode(chunk)
    restored = IdDictionary.from_table(ids.to_table())
    assert restored.encode(pa.array(pool[:1000])).tolist() == reference.encode(pool[:1000])


def test_unknown_names_are_not_found():
    ids = IdDictionary(["a"])
    with pytest.raises(KeyError, match="b"):
        ids.lookup(["a", "b"])
    with pytest.raises(ValueError, match="same name twice"):
        IdDictionary(["a", "a"])
