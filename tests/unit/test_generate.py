"""The synthetic BankSim matches the published figures of the real file, within stated tolerances."""

from __future__ import annotations

import duckdb
import pyarrow.compute as pc
import pytest

from patternflow.cli import main
from patternflow.ingest import banksim
from patternflow.ingest.generate import generate
from patternflow.ingest.parsing import read_importance, read_transactions


@pytest.fixture(scope="module")
def db(full_banksim):
    """DuckDB over the parsed full-size files: the statistics below are plain SQL."""
    con = duckdb.connect()
    transactions = read_transactions(full_banksim.transactions)
    importance = read_importance(full_banksim.importance)
    con.register("t", transactions)
    con.register("imp", importance)
    return con


def rows(db, sql: str) -> list[tuple]:
    return db.sql(sql).fetchall()


def test_size_steps_and_growth(db):
    assert rows(db, "select count(*), min(step), max(step) from t") == [(banksim.ROWS, 0, banksim.STEPS - 1)]
    per_step = dict(rows(db, "select step, count(*) from t group by step"))
    assert per_step[0] == banksim.ROWS_AT_FIRST_STEP
    assert per_step[175] == banksim.ROWS_AT_STEP_175
    early = sum(per_step[s] for s in range(30))
    late = sum(per_step[s] for s in range(150, 180))
    assert late > 1.3 * early


def test_file_is_sorted_by_step(full_banksim):
    steps = read_transactions(full_banksim.transactions)["step"]
    assert pc.all(pc.greater_equal(steps[1:], steps[:-1])).as_py()


def test_customers_merchants_and_categories(db):
    assert rows(db, "select count(distinct customer), count(distinct merchant) from t") == [(banksim.CUSTOMERS, 50)]
    assert rows(db, "select count(*) from (select merchant from t group by merchant having count(distinct category) > 1)") == [(0,)]
    assert dict(rows(db, "select category, count(*) from t group by category")) == banksim.CATEGORY_ROWS


def test_merchant_sizes(db):
    sizes = [n for (n,) in rows(db, "select count(*) n from t group by merchant order by n desc")]
    assert sizes[:10] == sorted((s for _, s in banksim.LARGE_MERCHANTS), reverse=True)
    assert sum(sizes[10:]) == 27_325 and len(sizes[10:]) == 40
    assert rows(db, "select count(*) from (select merchant from t group by merchant having count(*) > 50000)") == [(2,)]


@pytest.mark.parametrize("category", list(banksim.AMOUNT_STATS))
def test_amounts_per_category(db, category):
    mean, std, maximum = banksim.AMOUNT_STATS[category]
    got_mean, got_std, got_max, got_min = rows(
        db,
        f"select avg(amount)::double, stddev_pop(amount)::double, max(amount)::double, min(amount)::double "
        f"from t where fraud = 0 and category = '{category}'",
    )[0]
    small = banksim.CATEGORY_ROWS[category] - banksim.FRAUD_ROWS_BY_CATEGORY.get(category, 0) < 1000
    assert got_mean == pytest.approx(mean, rel=0.10 if small else 0.04)
    assert got_std == pytest.approx(std, rel=0.25 if small else 0.10)
    assert got_min >= 0 and got_max <= maximum
    assert got_max >= (0.7 if small else 0.9) * maximum


def test_amounts_overall_and_fraud(db):
    mean, minimum, fraud = rows(db, "select avg(amount)::double, min(amount)::double, sum(fraud)::int from t")[0]
    assert mean == pytest.approx(banksim.OVERALL_MEAN_AMOUNT, rel=0.04)
    assert minimum == 0
    assert fraud == banksim.FRAUD_ROWS
    fraud_mean, normal_mean = rows(db, "select avg(amount) filter (fraud = 1)::double, avg(amount) filter (fraud = 0)::double from t")[0]
    assert fraud_mean > 8 * normal_mean
    assert dict(rows(db, "select category, sum(fraud)::int from t group by category having sum(fraud) > 0")) == (
        banksim.FRAUD_ROWS_BY_CATEGORY
    )


def test_gender_and_age(db):
    genders = dict(rows(db, "select gender, count(*) from t group by gender"))
    assert set(genders) == set(banksim.GENDER_ROWS)
    for gender, expected in banksim.GENDER_ROWS.items():
        assert genders[gender] == pytest.approx(expected, rel=0.02 if expected > 10_000 else 0.35), gender
    ages = dict(rows(db, "select age, count(*) from t group by age"))
    for age, expected in banksim.AGE_ROWS.items():
        assert ages[age] == pytest.approx(expected, rel=0.08 if expected > 10_000 else 0.4), age
    assert rows(db, "select count(*) from (select customer from t group by customer having count(distinct gender) > 1)") == [(0,)]
    assert rows(db, "select count(*) from t where (gender = 'E') <> (age = 'U')") == [(0,)]
    assert rows(db, "select count(*) from t where zipcodeOri <> '28007' or zipMerchant <> '28007'") == [(0,)]


def test_customers_are_heavy_tailed_and_use_few_merchants(db):
    busiest, median = rows(db, "select max(n), median(n) from (select count(*) n from t group by customer)")[0]
    assert 230 <= busiest <= 330
    assert busiest > 1.6 * median
    merchants_used, both_transport = rows(
        db,
        "select median(k), avg((transport = 2)::int) from ("
        " select customer, count(distinct merchant) k,"
        " count(distinct merchant) filter (category = 'es_transportation') transport from t group by customer)",
    )[0]
    assert merchants_used <= 8
    assert both_transport > 0.95


def test_every_pattern_fires_on_the_default_data(db):
    child = rows(
        db,
        "select merchant, count(*) from (select customer, merchant from t group by all "
        "having count(*) >= 80 and avg(amount) < 23) group by merchant order by 2 desc",
    )
    assert 10 <= sum(n for _, n in child) <= 100
    largest_two = [m for (m,) in rows(db, "select merchant from t group by merchant order by count(*) desc limit 2")]
    assert {m for m, _ in child} <= set(largest_two)
    dei = rows(
        db,
        "select merchant from (select merchant, customer, min(gender) g from t group by all having count(distinct gender) = 1)"
        " group by merchant having count(*) filter (g = 'F') > 100"
        " and count(*) filter (g = 'F') < count(*) filter (g = 'M')",
    )
    assert 1 <= len(dei) <= 3


def test_importance_is_one_row_per_transaction_with_weight_equal_to_amount(full_banksim):
    transactions = read_transactions(full_banksim.transactions)
    importance = read_importance(full_banksim.importance)
    assert importance.num_rows == transactions.num_rows
    assert importance["Source"].equals(transactions["customer"])
    assert importance["Target"].equals(transactions["merchant"])
    assert importance["Weight"].equals(transactions["amount"])
    assert importance["typeTrans"].equals(transactions["category"])
    assert importance["fraud"].to_pylist() == [str(f) for f in transactions["fraud"].to_pylist()]  # read as text: ignored


def test_written_in_the_real_files_format(full_banksim):
    with open(full_banksim.transactions) as f:
        header, first = f.readline().strip(), f.readline().strip()
    assert header == "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud"
    step, customer, age, gender, zipcode, merchant, zipmerchant, category, amount, fraud = first.split(",")
    assert step == "0" and fraud in {"0", "1"}
    for quoted in (customer, age, gender, zipcode, merchant, zipmerchant, category):
        assert quoted.startswith("'") and quoted.endswith("'")
    assert customer[1] == "C" and merchant[1] == "M" and zipcode == "'28007'"
    assert not amount.startswith("'") and len(amount.split(".")[1]) <= 2


def test_deterministic_for_a_seed(tmp_path):
    a = generate(tmp_path / "a", seed=5, rows=5_000)
    b = generate(tmp_path / "b", seed=5, rows=5_000)
    c = generate(tmp_path / "c", seed=6, rows=5_000)
    assert a.transactions.read_bytes() == b.transactions.read_bytes()
    assert a.importance.read_bytes() == b.importance.read_bytes()
    assert a.transactions.read_bytes() != c.transactions.read_bytes()


def test_reduced_size_keeps_the_shape(small_banksim):
    table = read_transactions(small_banksim.transactions)
    assert table.num_rows == 60_000
    assert small_banksim.customers == round(banksim.CUSTOMERS * 60_000 / banksim.ROWS)
    assert table["step"][0].as_py() == 0 and table["step"][-1].as_py() == 179


def test_cli_generate(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--seed", "1", "--rows", "1000"]) == 0
    assert "wrote 1,000 transactions" in capsys.readouterr().out
    assert read_transactions(tmp_path / "transactions.csv").num_rows == 1000
    assert read_importance(tmp_path / "CustomerImportance.csv").num_rows == 1000


def test_cli_rejects_a_non_positive_row_count(tmp_path):
    with pytest.raises(SystemExit):
        main(["generate", "--out", str(tmp_path), "--rows", "0"])


def test_a_negative_seed_is_a_usage_error(tmp_path, capsys):
    from patternflow.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["generate", "--out", str(tmp_path), "--seed", "-1", "--rows", "10"])
    assert exited.value.code == 2 and "--seed: must be a whole number from 0" in capsys.readouterr().err
