"""A synthetic BankSim: transactions.csv and CustomerImportance.csv with the real files' shape.

The real files cannot be shipped, so this builds data with the same format and the figures in
``patternflow.ingest.banksim``: rows per step growing over time, 50 merchants of the published sizes,
the category and gender mixes, per-category amount distributions, fraud, and heavy-tailed
customers who mostly use the two transportation merchants. One merchant attracts more men than
women, so DEI-NEEDED fires; customers' amounts vary naturally, so a few dozen heavy customers
average below 23 (CHILD). Output is fully determined by the seed and the row count.

Everything is vectorised with numpy and pyarrow: the full 594,643 rows take a few seconds. The
whole table is built in memory (about 1.7 GB at ten times the size); ``generate(...,
block_rows=N)`` writes the same model block by block instead, in memory that follows the block and
the customers, not the file: a different random stream, so its files differ from the whole-table
ones for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from patternflow.ingest import banksim

TRANSACTIONS_FILE = "transactions.csv"
IMPORTANCE_FILE = "CustomerImportance.csv"

_TRANSPORT = "es_transportation"
# How strongly the one male-leaning merchant (the large sportsandtoys one) attracts men.
_MALE_AFFINITY = 2.0
_MALE_LEANING_MERCHANT = 7  # index into banksim.LARGE_MERCHANTS
# A customer's spending level scales their amounts; its spread drives the CHILD count.
_SPENDING_SPREAD = 0.03
_FAVOURITES_MEAN = 3.0
_FRAUD_AMOUNT_SHAPE, _FRAUD_AMOUNT_MEAN = 2.0, 535.0
_ZERO_BELOW_CENTS = 50


@dataclass(frozen=True)
class Generated:
    transactions: Path
    importance: Path
    rows: int
    customers: int
    merchants: int


def generate(out: str | Path, seed: int = 0, rows: int = banksim.ROWS, block_rows: int | None = None) -> Generated:
    """Write ``transactions.csv`` and ``CustomerImportance.csv`` into ``out``.

    With ``block_rows`` the files are written that many rows at a time (``generate_in_blocks``):
    for sizes whose whole table would not fit in memory.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if block_rows is not None:
        return generate_in_blocks(out, seed, rows, block_rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = synthesize(seed, rows)
    transactions, importance = out / TRANSACTIONS_FILE, out / IMPORTANCE_FILE
    write_transactions_csv(table, transactions)
    write_importance_csv(table, importance)
    return Generated(
        transactions,
        importance,
        table.num_rows,
        len(pc.unique(table["customer"])),
        len(pc.unique(table["merchant"])),
    )


def synthesize(seed: int, rows: int) -> pa.Table:
    """The synthetic transactions as a table (amounts in integer cents, fraud as 0/1)."""
    rng = np.random.default_rng(seed)
    scale = rows / banksim.ROWS
    categories, merchant_sizes, merchant_ids, activity, gender, age, spending = _merchants_and_customers(rng, rows)
    n_customers = len(activity)

    customer_of_row = _customers_per_merchant(rng, merchant_sizes, categories, activity, gender)
    merchant_of_row = np.repeat(np.arange(len(merchant_sizes)), merchant_sizes)
    category_of_row = categories[merchant_of_row]
    fraud = _fraud_rows(rng, category_of_row, scale)
    cents = _amounts(rng, category_of_row, fraud, spending[customer_of_row])

    order = rng.permutation(rows)
    customer_ids = _ids(rng, "C", n_customers)
    return pa.table(
        {
            "step": pa.array(np.repeat(np.arange(banksim.STEPS), _step_sizes(rows)), pa.int32()),
            "customer": pa.array(customer_ids[customer_of_row[order]]),
            "age": pa.array(age[customer_of_row[order]]),
            "gender": pa.array(gender[customer_of_row[order]]),
            "merchant": pa.array(merchant_ids[merchant_of_row[order]]),
            "category": pa.array(category_of_row[order]),
            "amount_cents": pa.array(cents[order], pa.int64()),
            "fraud": pa.array(fraud[order].astype(np.int8)),
        }
    )


def generate_in_blocks(out: str | Path, seed: int, rows: int, block_rows: int) -> Generated:
    """``generate`` in memory bounded by ``block_rows`` and the customers, for ten or a hundred
    times BankSim (the whole table of 59 million rows would take about 17 GB).

    The model is ``synthesize``'s, drawn block by block. A whole-table file is its merchants'
    rows, each drawn independently from the merchant's customer weights, then shuffled; so the
    rows of each merchant that fall in a block of consecutive rows follow a multivariate
    hypergeometric law over what is left, and so do each category's fraudulent rows among the
    category's rows of the block. Drawing those, then the block's rows as ``synthesize`` draws
    them and shuffling the block, gives files with the same distribution: the same merchant
    sizes, customers, steps and fraud counts exactly, and the same mixes and amounts.
    """
    if rows < 1 or block_rows < 1:
        raise ValueError(f"rows and block_rows must be at least 1, got {rows} and {block_rows}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    population = _population(rng, rows)
    transactions, importance = out / TRANSACTIONS_FILE, out / IMPORTANCE_FILE
    step_ends = np.cumsum(_step_sizes(rows))
    seen = np.zeros(len(population.customer_ids), dtype=bool)
    with transactions.open("wb") as t_sink, importance.open("wb") as i_sink:
        for start in range(0, rows, block_rows):
            table, customers = _block(rng, population, start, min(block_rows, rows - start), step_ends)
            seen[customers] = True
            t_columns, i_columns = _transactions_columns(table), _importance_columns(table)
            if start == 0:
                _write_header(t_columns, t_sink)
                _write_header(i_columns, i_sink)
            _write_rows(t_columns, t_sink)
            _write_rows(i_columns, i_sink)
    return Generated(transactions, importance, rows, int(seen.sum()), int((population.merchant_sizes > 0).sum()))


@dataclass
class _Population:
    """Who trades in a block-wise file, and what is left of each merchant's and category's rows."""

    categories: np.ndarray
    merchant_ids: np.ndarray
    merchant_sizes: np.ndarray
    rows_left: np.ndarray
    """Per merchant: rows not yet written."""
    fraud_left: dict[str, int]
    """Per category: fraudulent rows not yet written."""
    customer_ids: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    spending: np.ndarray
    cumulative_weights: list[np.ndarray]
    """Per merchant: the running sum of its customer weights, to draw a row's customer from."""


def _merchants_and_customers(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, ...]:
    """The model's first draws, the same for the whole-table and the block-wise file (in this
    order, so that one seed makes the same people for both): each merchant's category, rows and
    id, and each customer's activity, gender, age and spending."""
    categories, merchant_sizes = _merchant_sizes(rng, rows)
    merchant_ids = _ids(rng, "M", len(merchant_sizes))
    n_customers = max(1, round(banksim.CUSTOMERS * rows / banksim.ROWS))
    activity = rng.beta(3.0, 2.2, n_customers).clip(0.02, 0.85)
    expected_rows = activity / activity.sum() * rows
    gender = _fill_by_rows(rng, expected_rows, banksim.GENDER_ROWS)
    age = np.where(gender == "E", "U", _fill_by_rows(rng, expected_rows, {k: v for k, v in banksim.AGE_ROWS.items() if k != "U"}))
    spending = rng.lognormal(0.0, _SPENDING_SPREAD, n_customers)
    return categories, merchant_sizes, merchant_ids, activity, gender, age, spending


def _population(rng: np.random.Generator, rows: int) -> _Population:
    """The merchants and customers of ``synthesize``, with each merchant's customer weights."""
    scale = rows / banksim.ROWS
    categories, merchant_sizes, merchant_ids, activity, gender, age, spending = _merchants_and_customers(rng, rows)
    n_customers = len(activity)
    weights = _merchant_weights(rng, categories, activity, gender, merchant_sizes)
    category_rows = {c: int(merchant_sizes[categories == c].sum()) for c in banksim.FRAUD_ROWS_BY_CATEGORY}
    return _Population(
        categories=categories,
        merchant_ids=merchant_ids,
        merchant_sizes=merchant_sizes,
        rows_left=merchant_sizes.copy(),
        fraud_left={c: min(category_rows[c], round(n * scale)) for c, n in banksim.FRAUD_ROWS_BY_CATEGORY.items()},
        customer_ids=_ids(rng, "C", n_customers),
        age=age,
        gender=gender,
        spending=spending,
        cumulative_weights=[np.cumsum(w) for w in weights],
    )


def _block(rng: np.random.Generator, population: _Population, start: int, rows: int, step_ends: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Rows ``start`` to ``start + rows`` of a block-wise file, and the customers they name."""
    counts = rng.multivariate_hypergeometric(population.rows_left, rows)
    merchant_of_row = np.repeat(np.arange(len(counts)), counts)
    category_of_row = population.categories[merchant_of_row]
    fraud = _block_fraud(rng, population, category_of_row)
    customer_of_row = np.concatenate([_draw(rng, population.cumulative_weights[m], int(k)) for m, k in enumerate(counts)])
    cents = _amounts(rng, category_of_row, fraud, population.spending[customer_of_row])
    population.rows_left -= counts

    order = rng.permutation(rows)
    customers = customer_of_row[order]
    table = pa.table(
        {
            "step": pa.array(np.searchsorted(step_ends, np.arange(start, start + rows), side="right"), pa.int32()),
            "customer": pa.array(population.customer_ids[customers]),
            "age": pa.array(population.age[customers]),
            "gender": pa.array(population.gender[customers]),
            "merchant": pa.array(population.merchant_ids[merchant_of_row[order]]),
            "category": pa.array(category_of_row[order]),
            "amount_cents": pa.array(cents[order], pa.int64()),
            "fraud": pa.array(fraud[order].astype(np.int8)),
        }
    )
    return table, customers


def _block_fraud(rng: np.random.Generator, population: _Population, category_of_row: np.ndarray) -> np.ndarray:
    """Which of a block's rows are fraudulent: each category's share of what is left of its fraud."""
    fraud = np.zeros(len(category_of_row), dtype=bool)
    for category, left in population.fraud_left.items():
        rows = np.flatnonzero(category_of_row == category)
        category_left = int(population.rows_left[population.categories == category].sum())
        take = int(rng.hypergeometric(left, category_left - left, len(rows))) if len(rows) else 0
        fraud[rng.choice(rows, size=take, replace=False)] = True
        population.fraud_left[category] = left - take
    return fraud


def _draw(rng: np.random.Generator, cumulative: np.ndarray, size: int) -> np.ndarray:
    """``size`` customers drawn with the weights whose running sum is ``cumulative``."""
    picks = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(picks, len(cumulative) - 1)


def _apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` that sum to ``total`` (largest remainder)."""
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = total - counts.sum()
    counts[np.argsort(counts - exact, kind="stable")[:short]] += 1
    return counts


def _step_sizes(rows: int) -> np.ndarray:
    """Rows per step: 2,430 at step 0 growing to 3,774 at step 175, summing to the file's rows."""
    steps = np.arange(banksim.STEPS)
    growth = banksim.ROWS_AT_STEP_175 - banksim.ROWS_AT_FIRST_STEP
    target_extra = banksim.ROWS - banksim.ROWS_AT_FIRST_STEP * banksim.STEPS
    low, high = 0.05, 3.0  # the exponent p of  2430 + growth * (s / 175) ** p  matching the total
    for _ in range(60):
        p = (low + high) / 2
        if growth * ((steps / 175) ** p).sum() > target_extra:
            low = p
        else:
            high = p
    shape = banksim.ROWS_AT_FIRST_STEP + growth * (steps / 175) ** ((low + high) / 2)
    return _apportion(shape, rows)


def _merchant_sizes(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Category and row count of each of the 50 merchants, scaled to ``rows``."""
    categories = [c for c, _ in banksim.LARGE_MERCHANTS]
    sizes = [float(s) for _, s in banksim.LARGE_MERCHANTS]
    largest_small = min(s for _, s in banksim.LARGE_MERCHANTS)
    for category, count in banksim.SMALL_MERCHANTS_BY_CATEGORY.items():
        rest = banksim.CATEGORY_ROWS[category] - sum(s for c, s in banksim.LARGE_MERCHANTS if c == category)
        while True:
            shares = rng.dirichlet(np.full(count, 3.0))
            if (shares * rest).max() < largest_small:
                break
        categories += [category] * count
        sizes += list(shares * rest)
    return np.array(categories), _apportion(np.array(sizes), rows)


def _ids(rng: np.random.Generator, prefix: str, count: int) -> np.ndarray:
    """Distinct ids like the real ones: a letter and 7 to 10 digits ('C1093826151', 'M348934600')."""
    draws = rng.integers(1_000_000, 2_147_483_647, size=count + count // 10 + 10)
    _, first = np.unique(draws, return_index=True)
    numbers = draws[np.sort(first)[:count]]
    return np.char.add(prefix, numbers.astype(str))


def _fill_by_rows(rng: np.random.Generator, expected_rows: np.ndarray, targets: dict[str, int]) -> np.ndarray:
    """Give each customer a label so that labels' expected row counts follow ``targets``."""
    labels = np.array(list(targets))
    bounds = np.cumsum(np.array(list(targets.values()), dtype=float))
    bounds *= expected_rows.sum() / bounds[-1]
    order = rng.permutation(len(expected_rows))
    midpoints = np.cumsum(expected_rows[order]) - expected_rows[order] / 2
    result = np.empty(len(expected_rows), dtype=labels.dtype)
    result[order] = labels[np.searchsorted(bounds, midpoints).clip(0, len(labels) - 1)]
    return result


def _customers_per_merchant(
    rng: np.random.Generator, sizes: np.ndarray, categories: np.ndarray, activity: np.ndarray, gender: np.ndarray
) -> np.ndarray:
    """The customer of every row, merchant by merchant (rows grouped by merchant)."""
    weights = _merchant_weights(rng, categories, activity, gender, sizes)
    n = len(activity)
    return np.concatenate([rng.choice(n, size=size, p=w / w.sum()) for w, size in zip(weights, sizes, strict=True)])


def _merchant_weights(
    rng: np.random.Generator, categories: np.ndarray, activity: np.ndarray, gender: np.ndarray, sizes: np.ndarray
) -> list[np.ndarray]:
    """Each merchant's weight on every customer: how likely a row of that merchant is theirs.

    Every customer uses the two transportation merchants, with a personal preference between
    them; each also has a few favourite other merchants, picked by merchant size (and, for one
    merchant, by gender), and spreads the rest of their activity over those.
    """
    n = len(activity)
    transport = np.flatnonzero(categories == _TRANSPORT)
    others = np.flatnonzero(categories != _TRANSPORT)
    preference = rng.beta(6.0, 4.0, n)

    pull = np.tile(np.log(sizes[others].clip(1) ** 0.7), (n, 1))
    male_column = np.flatnonzero(others == _MALE_LEANING_MERCHANT)
    pull[np.ix_(gender == "M", male_column)] += np.log(_MALE_AFFINITY)
    keys = pull + rng.gumbel(size=pull.shape)
    favourites = np.minimum(1 + rng.poisson(_FAVOURITES_MEAN, n), len(others))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    is_fan = rank < favourites[:, None]

    weights = []
    for merchant in range(len(sizes)):
        if merchant in transport:
            share = preference if merchant == transport[0] else 1.0 - preference
            weights.append(activity * share)
        else:
            fans = activity * is_fan[:, np.flatnonzero(others == merchant)[0]]
            weights.append(fans if fans.sum() else activity)
    return weights


def _fraud_rows(rng: np.random.Generator, category_of_row: np.ndarray, scale: float) -> np.ndarray:
    fraud = np.zeros(len(category_of_row), dtype=bool)
    for category, count in banksim.FRAUD_ROWS_BY_CATEGORY.items():
        rows = np.flatnonzero(category_of_row == category)
        take = min(len(rows), round(count * scale))
        fraud[rng.choice(rows, size=take, replace=False)] = True
    return fraud


def _amounts(rng: np.random.Generator, category_of_row: np.ndarray, fraud: np.ndarray, spending: np.ndarray) -> np.ndarray:
    """Amounts in cents: a gamma law per category cut at the category's maximum; fraud is larger."""
    amounts = np.empty(len(category_of_row))
    for category, (mean, std, maximum) in banksim.AMOUNT_STATS.items():
        rows = np.flatnonzero((category_of_row == category) & ~fraud)
        amounts[rows] = _bounded_gamma(rng, (mean / std) ** 2, std**2 / mean, maximum / spending[rows])
        amounts[rows] *= spending[rows]
    rows = np.flatnonzero(fraud)
    amounts[rows] = _bounded_gamma(
        rng, _FRAUD_AMOUNT_SHAPE, _FRAUD_AMOUNT_MEAN / _FRAUD_AMOUNT_SHAPE, np.full(len(rows), banksim.MAX_AMOUNT)
    )
    cents = np.round(amounts * 100).astype(np.int64)
    cents[cents < _ZERO_BELOW_CENTS] = 0  # the real file has a few zero amounts
    return cents


def _bounded_gamma(rng: np.random.Generator, shape: float, scale: float, maximum: np.ndarray) -> np.ndarray:
    values = rng.gamma(shape, scale, len(maximum))
    while (over := values > maximum).any():
        values[over] = rng.gamma(shape, scale, over.sum())
    return values


def _quoted(values: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise("'", values, "'", "")


def _money(cents: pa.Array) -> pa.Array:
    """Cents as the real file prints amounts: at most two decimals, no trailing zero but one."""
    whole = pc.cast(pc.divide(cents, 100), pa.string())
    fraction = pc.utf8_lpad(pc.cast(pc.subtract(cents, pc.multiply(pc.divide(cents, 100), 100)), pa.string()), 2, "0")
    text = pc.binary_join_element_wise(whole, fraction, ".")
    return pc.replace_substring_regex(text, r"(\.[0-9])0$", r"\1")


def _write(columns: dict[str, pa.Array], path: Path) -> None:
    with path.open("wb") as sink:
        _write_header(columns, sink)
        _write_rows(columns, sink)


def _write_header(columns: dict[str, pa.Array], sink: BinaryIO) -> None:
    sink.write((",".join(columns) + "\n").encode())


def _write_rows(columns: dict[str, pa.Array], sink: BinaryIO) -> None:
    pacsv.write_csv(pa.table(columns), sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def write_transactions_csv(table: pa.Table, path: Path) -> None:
    """Write transactions in the real file's format: strings in single quotes, bare numbers."""
    _write(_transactions_columns(table), path)


def write_importance_csv(table: pa.Table, path: Path) -> None:
    """One CustomerImportance row per transaction, in the same order, with Weight = amount."""
    _write(_importance_columns(table), path)


def _transactions_columns(table: pa.Table) -> dict[str, pa.Array]:
    zipcode = pa.array(np.full(table.num_rows, f"'{banksim.ZIPCODE}'"))
    return {
        "step": pc.cast(table["step"], pa.string()),
        "customer": _quoted(table["customer"]),
        "age": _quoted(table["age"]),
        "gender": _quoted(table["gender"]),
        "zipcodeOri": zipcode,
        "merchant": _quoted(table["merchant"]),
        "zipMerchant": zipcode,
        "category": _quoted(table["category"]),
        "amount": _money(table["amount_cents"]),
        "fraud": pc.cast(table["fraud"], pa.string()),
    }


def _importance_columns(table: pa.Table) -> dict[str, pa.Array]:
    return {
        "Source": _quoted(table["customer"]),
        "Target": _quoted(table["merchant"]),
        "Weight": _money(table["amount_cents"]),
        "typeTrans": _quoted(table["category"]),
        "fraud": pc.cast(table["fraud"], pa.string()),
    }
