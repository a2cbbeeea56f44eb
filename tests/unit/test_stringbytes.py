"""The byte-level checks agree with their plain definitions, on any strings and any slicing."""

from __future__ import annotations

import re
from decimal import Decimal

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from patternflow.engine.detection_engine import _cents, _gender_bits
from patternflow.ingest import stringbytes

values = st.lists(st.one_of(st.from_regex(r"C[0-9]{0,4}", fullmatch=True), st.text(max_size=4)), max_size=30)


def chunked(strings: list[str], cut: int, start: int) -> pa.ChunkedArray:
    """The strings as a chunked array cut in two, its first chunk a slice of a larger array."""
    cut = min(cut, len(strings))
    head = pa.array(["pad"] * start + strings[:cut], pa.string()).slice(start)
    return pa.chunked_array([head, pa.array(strings[cut:], pa.string())], pa.string())


@given(values, st.integers(0, 30), st.integers(0, 3))
def test_all_ids_is_a_letter_then_digits(strings, cut, start):
    expected = all(re.fullmatch(r"C[0-9]+", s) for s in strings)
    assert stringbytes.all_ids(chunked(strings, cut, start), "C") == expected


@given(values, st.integers(0, 30), st.integers(0, 3))
def test_single_bytes_only_when_every_value_is_one_byte(strings, cut, start):
    got = stringbytes.single_bytes(chunked(strings, cut, start))
    if all(len(s.encode()) == 1 for s in strings):
        assert bytes(got) == "".join(strings).encode()
    else:
        assert got is None


numbers = st.lists(
    st.one_of(st.from_regex(r"[+-]?[0-9]{0,12}", fullmatch=True), st.text(alphabet="0123456789.+-eEx \u0663", max_size=6)),
    max_size=30,
)


@given(numbers, st.integers(0, 30), st.integers(0, 3), st.integers(1, 10))
def test_the_number_shapes_are_the_slow_paths_regular_expressions(strings, cut, start, digits):
    """The fast path's checks and the slow path's patterns (patternflow.ingest.parsing) accept the same values."""
    column = chunked(strings, cut, start)
    whole = rf"[0-9]{{1,{digits}}}"
    assert stringbytes.all_whole_numbers(column, digits) == all(re.fullmatch(whole, s, re.ASCII) for s in strings)
    assert stringbytes.all_flags(column) == all(s in ("0", "1") for s in strings)


def test_nulls_are_neither_ids_nor_letters():
    column = pa.array(["C1", None], pa.string())
    assert not stringbytes.all_ids(column, "C")
    assert stringbytes.single_bytes(pa.array(["F", None], pa.string())) is None


@given(st.lists(st.integers(-(10**13), 10**13), max_size=20), st.integers(0, 3))
def test_cents_are_read_exactly_from_sliced_decimals(cents, start):
    amounts = [Decimal(c) / 100 for c in [0] * start + cents]
    column = pa.chunked_array([pa.array(amounts, pa.decimal128(16, 2)).slice(start)])
    assert _cents(column).tolist() == cents


def test_gender_bits_for_letters_and_longer_values():
    letters = pa.chunked_array([pa.array(["F", "M", "E", "U"])])
    assert _gender_bits(letters).tolist() == [1, 2, 4, 4]
    words = pa.chunked_array([pa.array(["F", "male", "M"])])
    assert _gender_bits(words).tolist() == [1, 4, 2]
    assert np.asarray(_gender_bits(pa.chunked_array([], pa.string()))).size == 0
