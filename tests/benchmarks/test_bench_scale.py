"""The scale benchmark's own pieces on a small file: its data is made once and reused, the
block-wise generator keeps the model's exact totals, and a child's peak RSS is its own."""

from __future__ import annotations

import json
import sys

import duckdb

from patternflow.ingest import banksim
from patternflow.ingest.parsing import read_transactions
from tests.benchmarks.bench_scale import bench_data, compare_files, run_measured

ROWS = 30_000


def test_data_is_made_once_and_made_again_when_its_files_changed(tmp_path):
    made = bench_data(ROWS, root=tmp_path, block_rows=7_000)
    assert made.made_in is not None and made.chunks == 3
    assert json.loads((made.folder / "generated.json").read_text())["rows"] == ROWS
    assert bench_data(ROWS, root=tmp_path, block_rows=7_000).made_in is None
    with made.transactions.open("a") as damaged:
        damaged.write("0")
    assert bench_data(ROWS, root=tmp_path, block_rows=7_000).made_in is not None


def test_block_wise_files_keep_the_models_totals(tmp_path):
    data = bench_data(ROWS, root=tmp_path, block_rows=7_000)
    con = duckdb.connect()
    con.register("t", read_transactions(data.transactions))
    assert con.sql("select count(*), min(step), max(step), count(distinct merchant) from t").fetchall() == [(ROWS, 0, 179, 50)]
    steps = [s for (s,) in con.sql("select step from t").fetchall()]
    assert steps == sorted(steps)
    scale = ROWS / banksim.ROWS
    per_category = {c: (n, f) for c, n, f in con.sql("select category, count(*), sum(fraud::int)::int from t group by all").fetchall()}
    for category, count in banksim.FRAUD_ROWS_BY_CATEGORY.items():
        rows, fraud = per_category.get(category, (0, 0))
        assert fraud == min(rows, round(count * scale))
    [(customers,)] = con.sql("select count(distinct customer) from t").fetchall()
    assert customers <= round(banksim.CUSTOMERS * scale)


def test_a_childs_peak_rss_is_its_own(tmp_path):
    big = run_measured([sys.executable, "-c", "x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096])"])
    small = run_measured([sys.executable, "-c", "pass"])
    assert big.peak_rss > 300 * 2**20 > small.peak_rss


def test_files_compare_without_their_time_columns(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "detection_0.csv").write_text("YStartTime,detectionTime,x\n1,2,same\n")
    (tmp_path / "b" / "detection_0.csv").write_text("YStartTime,detectionTime,x\n3,4,same\n")
    assert compare_files(tmp_path / "a", tmp_path / "b") == []
    (tmp_path / "b" / "detection_1.csv").write_text("YStartTime,detectionTime,x\n")
    assert compare_files(tmp_path / "a", tmp_path / "b") == ["detection_1.csv: only in the uninterrupted replay"]
