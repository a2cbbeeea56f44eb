"""The detection contract, to the row: differential tests against the reference, and boundaries."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import ArrowInput, DetectionEngine, OutOfOrderChunk, initial_state
from patternflow.engine.state import StateStore
from patternflow.engine.store import LocalStore
from patternflow.engine.stream import commit, open_engine, write_files
from patternflow.ingest.parsing import read_importance, read_transactions
from tests.helpers import (
    ChunkClock,
    as_frames,
    expected_files,
    file_rows,
    importance_table,
    read_files,
    run_stream,
    transactions_table,
)
from tests.reference import reference_sequence
from tests.strategies import small_streams


def detections(files: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(patternId, ActionType, customerName, MerchantId) of every row, in output order."""
    return [tuple(row[2:]) for name in sorted(files, key=lambda n: int(n[10:-4])) for row in file_rows(files[name])]


def check_against_reference(transactions: pa.Table, importance: pa.Table, config: DetectionConfig, tmp_path) -> dict:
    files = run_stream(transactions, importance, config, tmp_path / "out")
    expected = expected_files(reference_sequence(*as_frames(transactions, importance), config), config)
    assert files == expected
    return files


# --- differential ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_generated_banksim_matches_the_reference(small_banksim, tmp_path):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    config = DetectionConfig(
        chunk_size=4_000, upgrade_min_merchant_transactions=5_000, child_min_transactions=60, dei_min_female_customers=20
    )
    files = check_against_reference(transactions, importance, config, tmp_path)
    assert {d[0] for d in detections(files)} == {"PatId1", "PatId2", "PatId3"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(small_streams())
def test_random_small_streams_match_the_reference(tmp_path_factory, stream):
    transactions, importance, config = stream
    check_against_reference(transactions, importance, config, tmp_path_factory.mktemp("stream"))


# --- boundaries ------------------------------------------------------------------------------------


def stream_detections(rows, weights, config, tmp_path, **kwargs) -> list[tuple]:
    return detections(run_stream(transactions_table(rows), importance_table(weights), config, tmp_path / "out", **kwargs))


def one_chunk_each(*chunks: list[tuple]) -> tuple[list[tuple], int]:
    """Concatenate chunks of equal length (padding with rows at an unrelated merchant)."""
    size = max(len(c) for c in chunks)
    rows = []
    for chunk in chunks:
        rows += chunk + [("CX", "MX", "U", 1)] * (size - len(chunk))
    return rows, size


def test_upgrade_needs_strictly_more_than_50000_transactions(tmp_path):
    # 10 customers; C0 is the busiest and has the lowest weight.
    # Counts 5,009 and 9 x 4,999: P90 = 4,999 + 0.1 * 10 = 5,000; weights 1, 3..11: W10 = 1 + 0.9 * 2 = 2.8.
    base = [("C0", "M1", "F", 50)] * 5_009 + [(f"C{i}", "M1", "F", 50) for i in range(1, 10) for _ in range(4_999)]
    assert len(base) == 50_000
    weights = [("C0", "M1", "1.00")] + [(f"C{i}", "M1", f"{i + 2}.00") for i in range(1, 10)]
    rows = base + [("C0", "M1", "F", 50)]
    found = stream_detections(rows, weights, DetectionConfig(chunk_size=50_000), tmp_path)
    assert found == [("PatId1", "UPGRADE", "C0", "M1")]
    assert len(read_files(tmp_path / "out")) == 1
    # At exactly 50,000 nothing fires:
    assert stream_detections(base, weights, DetectionConfig(chunk_size=50_000), tmp_path / "exact") == []


def test_child_average_exactly_23_is_not_child(tmp_path):
    rows = [("C1", "M1", "F", "23.00")] * 80 + [("C2", "M1", "F", "22.99")] * 80 + [("C3", "M1", "F", "1.00")] * 79
    # Average exactly 23 from uneven amounts, too: 40 x 22.50 + 40 x 23.50.
    rows += [("C4", "M1", "F", "22.50")] * 40 + [("C4", "M1", "F", "23.50")] * 40
    found = stream_detections(rows, [], DetectionConfig(chunk_size=1_000), tmp_path)
    assert found == [("PatId2", "CHILD", "C2", "M1")]


@pytest.mark.parametrize(
    ("threshold", "amount", "child"),
    [
        ("23.0000001", "23.00", True),
        ("23.0000000", "23.00", False),
        ("0.0000001", "0.00", True),
        ("0.000000000000000001", "0.00", True),
        ("1000000000000", "99999999.99", True),
        ("-1000000000000", "-99999999.99", False),
        ("1E+2", "99.99", True),
    ],
)
def test_a_configured_child_threshold_keeps_every_digit(tmp_path, threshold, amount, child):
    config = DetectionConfig(chunk_size=10, child_min_transactions=1, child_max_average_amount=Decimal(threshold))
    found = stream_detections([("C1", "M1", "F", amount)], [], config, tmp_path)
    assert found == ([("PatId2", "CHILD", "C1", "M1")] if child else [])


def test_a_child_threshold_with_more_decimals_than_can_be_compared_exactly_is_refused():
    with pytest.raises(ValueError, match="at most 18 decimals"):
        DetectionConfig(child_max_average_amount=Decimal("0.0000000000000000001"))


def test_child_qualifying_once_is_emitted_once_and_kept(tmp_path):
    first = [("C1", "M1", "F", "10.00")] * 80
    later = [("C1", "M1", "F", "100.00")] * 80
    back = [("C1", "M1", "F", "0.00")] * 80
    rows, size = one_chunk_each(first, later, back)
    found = stream_detections(rows, [], DetectionConfig(chunk_size=size), tmp_path)
    assert found == [("PatId2", "CHILD", "C1", "M1")]


def female_male_rows(female: int, male: int) -> list[tuple]:
    return [(f"F{i}", "M1", "F", 1) for i in range(female)] + [(f"H{i}", "M1", "M", 1) for i in range(male)]


def test_dei_needs_more_than_100_clear_female_customers(tmp_path):
    assert stream_detections(female_male_rows(100, 150), [], DetectionConfig(chunk_size=1_000), tmp_path / "a") == []
    assert stream_detections(female_male_rows(101, 150), [], DetectionConfig(chunk_size=1_000), tmp_path / "b") == [
        ("PatId3", "DEI-NEEDED", "", "M1")
    ]
    assert stream_detections(female_male_rows(101, 101), [], DetectionConfig(chunk_size=1_000), tmp_path / "c") == []


def test_customer_with_both_genders_is_not_clear(tmp_path):
    rows = female_male_rows(102, 103) + [("F0", "M1", "M", 1), ("F1", "M1", "E", 1)]  # F0, F1 are no longer clear
    assert stream_detections(rows, [], DetectionConfig(chunk_size=1_000), tmp_path) == []
    rows = female_male_rows(102, 101) + [("H0", "M1", "F", 1), ("H1", "M1", "U", 1)]  # 102 F vs 99 M: no
    assert stream_detections(rows, [], DetectionConfig(chunk_size=1_000), tmp_path / "b") == []


def test_upgrade_ties_at_the_p90_count_all_qualify(tmp_path):
    # Counts 1,1,1,1,1,1,1,5,5,5: P90 = 5 (tie); all three customers with 5 have the lowest weight.
    rows = [(f"C{i}", "M1", "F", 1) for i in range(7)] + [(f"T{i}", "M1", "F", 1) for i in range(3) for _ in range(5)]
    weights = [(f"C{i}", "M1", "9") for i in range(7)] + [(f"T{i}", "M1", "1") for i in range(3)]
    config = DetectionConfig(chunk_size=100, upgrade_min_merchant_transactions=10)
    assert stream_detections(rows, weights, config, tmp_path) == [("PatId1", "UPGRADE", f"T{i}", "M1") for i in range(3)]


def test_upgrade_interpolated_p90_between_counts(tmp_path):
    # Counts 1 x 9 and 3: h = 9 * 0.9 = 8.1 -> P90 = 1 + 0.1 * 2 = 1.2; only the count 3 qualifies.
    rows = [(f"C{i}", "M1", "F", 1) for i in range(9)] + [("B", "M1", "F", 1)] * 3
    weights = [(f"C{i}", "M1", "1") for i in range(9)] + [("B", "M1", "1")]
    config = DetectionConfig(chunk_size=100, upgrade_min_merchant_transactions=10)
    assert stream_detections(rows, weights, config, tmp_path) == [("PatId1", "UPGRADE", "B", "M1")]


def test_upgrade_weight_exactly_w10_qualifies_and_missing_weight_never(tmp_path):
    # Weights of 11 customers 1..11 -> W10 = x_(1 + 1) = 2 exactly. Customers with 2 rows each
    # (counts all equal, so all reach P90); the one with weight 2 qualifies, like weight 1.
    # "N" has no importance rows: never UPGRADE, and not part of W10.
    rows = [(f"C{i}", "M1", "F", 1) for i in range(1, 12) for _ in range(2)] + [("N", "M1", "F", 1)] * 2
    weights = [(f"C{i}", "M1", str(i)) for i in range(1, 12)]
    config = DetectionConfig(chunk_size=100, upgrade_min_merchant_transactions=10)
    assert stream_detections(rows, weights, config, tmp_path) == [
        ("PatId1", "UPGRADE", "C1", "M1"),
        ("PatId1", "UPGRADE", "C2", "M1"),
    ]


def test_weight_is_the_mean_over_all_importance_rows_of_the_pair(tmp_path):
    # C1's weights 1 and 5 average 3; C2 has 3.01; others high: W10 (index 0 of 11) = 3.
    rows = [(f"C{i}", "M1", "F", 1) for i in range(1, 12) for _ in range(2)]
    weights = [("C1", "M1", "1"), ("C1", "M1", "5"), ("C2", "M1", "3.01")] + [(f"C{i}", "M1", "50") for i in range(3, 12)]
    config = DetectionConfig(chunk_size=100, upgrade_min_merchant_transactions=10, upgrade_weight_quantile="0")
    assert stream_detections(rows, weights, config, tmp_path) == [("PatId1", "UPGRADE", "C1", "M1")]


def test_order_is_pattern_then_merchant_then_customer_in_plain_string_order(tmp_path):
    rows = []
    for merchant in ("M9", "M10", "M2"):
        for customer in ("C9", "C10"):
            rows += [(customer, merchant, "F", "1.00")] * 80
    found = stream_detections(rows, [], DetectionConfig(chunk_size=10_000), tmp_path)
    assert found == [("PatId2", "CHILD", c, m) for m in ("M10", "M2", "M9") for c in ("C10", "C9")]


def test_file_cutting(tmp_path):
    def child_rows(customers: int) -> list[tuple]:
        return [(f"C{i:03d}", "M1", "F", "1.00") for i in range(customers) for _ in range(80)]

    config = DetectionConfig(chunk_size=80 * 200)
    files = run_stream(transactions_table(child_rows(120)), importance_table([]), config, tmp_path / "a")
    assert sorted(files) == ["detection_0.csv", "detection_1.csv", "detection_2.csv"]
    assert [len(file_rows(files[f"detection_{i}.csv"])) for i in range(3)] == [50, 50, 20]
    files = run_stream(transactions_table(child_rows(100)), importance_table([]), config, tmp_path / "b")
    assert sorted(files) == ["detection_0.csv", "detection_1.csv"]  # a multiple of 50: no empty file
    files = run_stream(transactions_table(child_rows(0) + [("C1", "M1", "F", 1)]), importance_table([]), config, tmp_path / "c")
    assert files == {}


def test_files_are_written_as_soon_as_50_rows_exist(tmp_path):
    rows = [(f"C{i:03d}", "M1", "F", "1.00") for i in range(60) for _ in range(80)]
    engine = DetectionEngine.start(importance_table([]), DetectionConfig(chunk_size=len(rows)), ChunkClock())
    result = engine.fold(0, transactions_table(rows))
    assert [f.name for f in result.files] == ["detection_0.csv"]
    assert engine.pending == 10
    assert [len(f.rows) for f in engine.finish()] == [10]


def test_file_format(tmp_path):
    files = run_stream(transactions_table([("C1", "M1", "F", "1.00")] * 80), importance_table([]), DetectionConfig(), tmp_path)
    assert files["detection_0.csv"] == (
        "YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId\n"
        "2026-01-01T00:00:00.000+05:30,2026-01-01T00:00:00.001+05:30,PatId2,CHILD,C1,M1\n"
    )


def test_chunks_must_come_in_order():
    engine = DetectionEngine.start(importance_table([]), DetectionConfig(chunk_size=1))
    engine.fold(0, transactions_table([("C1", "M1", "F", 1)]))
    with pytest.raises(OutOfOrderChunk, match="expected chunk 1, got chunk 2"):
        engine.fold(2, transactions_table([("C1", "M1", "F", 1)]))
    with pytest.raises(OutOfOrderChunk, match="expected chunk 1, got chunk 0"):
        engine.fold(0, transactions_table([("C1", "M1", "F", 1)]))
    engine.finish()
    with pytest.raises(OutOfOrderChunk, match="after the end of the stream"):
        engine.fold(1, transactions_table([("C1", "M1", "F", 1)]))


# --- batching and crashes --------------------------------------------------------------------------


BATCH_CONFIG = DetectionConfig(chunk_size=5_000, upgrade_min_merchant_transactions=5_000, child_min_transactions=60, rows_per_file=5)


@pytest.mark.parametrize("per_call", [1, 3, 12])
def test_batching_does_not_change_the_files(small_banksim, tmp_path, per_call):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    all_at_once = run_stream(transactions, importance, BATCH_CONFIG, tmp_path / "all")
    batched = run_stream(transactions, importance, BATCH_CONFIG, tmp_path / "batched", state_dir=tmp_path / "state", per_call=per_call)
    assert batched == all_at_once
    assert len(all_at_once) >= 3


def test_crash_after_files_before_commit_replays_identically(small_banksim, tmp_path):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    uninterrupted = run_stream(transactions, importance, BATCH_CONFIG, tmp_path / "clean")

    state = StateStore(LocalStore(tmp_path / "state"))
    outputs = LocalStore(tmp_path / "out")
    clock = ChunkClock()
    # First session: chunks 0-3 committed; chunks 4-7 write their files, then the process "dies".
    engine = open_engine(state, lambda: importance, BATCH_CONFIG, clock)
    for index in range(8):
        clock.chunk = index
        result = engine.fold(index, transactions.slice(index * 5_000, 5_000))
        write_files(outputs, "", result.files)
        if index == 3:
            commit(state, engine)
    engine.close()
    written_before_crash = read_files(tmp_path / "out")
    assert len(written_before_crash) > len(uninterrupted) // 3
    # Second session resumes from chunk 4 and rewrites the same file names.
    engine = open_engine(state, lambda: importance, BATCH_CONFIG, clock)
    assert engine.chunks_folded == 4
    for index in range(4, 12):
        clock.chunk = index
        write_files(outputs, "", engine.fold(index, transactions.slice(index * 5_000, 5_000)).files)
    clock.chunk = 12
    write_files(outputs, "", engine.finish())
    commit(state, engine)
    assert read_files(tmp_path / "out") == uninterrupted
    rows = detections(uninterrupted)
    assert len(rows) == len(set(rows))


def test_an_arrow_input_is_read_as_its_current_table():
    """Registered once, an input shows DuckDB whatever table the engine put behind it last."""
    schema = pa.schema([("x", pa.int64())])
    holder = ArrowInput(schema)
    con = duckdb.connect()
    con.register("input", holder)
    assert con.execute("SELECT count(*) FROM input").fetchone() == (0,)
    holder.table = pa.table({"x": [1, 2, 3]}, schema=schema)
    assert con.execute("SELECT sum(x) FROM input").fetchone() == (6,)
    holder.clear()
    assert con.execute("SELECT count(*) FROM input").fetchone() == (0,)


def test_the_starting_state_does_not_depend_on_the_order_of_customer_importance(small_banksim):
    """start_stream.sql runs on every core; its ORDER BY keeps the ids it gives (and so the state)
    the same whatever the order of its input rows or threads."""
    importance = read_importance(small_banksim.importance)
    shuffled = importance.take(np.random.default_rng(3).permutation(importance.num_rows))
    first, second = initial_state(importance), initial_state(shuffled)
    for name in ("customers", "merchants", "pairs"):
        assert getattr(first, name).equals(getattr(second, name)), name
