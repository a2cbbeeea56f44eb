"""The data contract: what the parser accepts, what it rejects, and how it says so."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patternflow.errors import InputError, Problem
from patternflow.ingest import parsing, schema
from patternflow.ingest.parsing import check_csv, parse_importance, parse_transactions, read_transactions
from tests.conftest import HEADER, IMPORTANCE_HEADER, write

QUOTED = "0,'C1093826151','4','M','28007','M348934600','28007','es_transportation',4.55,0"
UNQUOTED = "0,C352968107,2,F,28007,M1823072687,28007,es_transportation,39.68,0"
EXPECTED_QUOTED = {
    "step": 0,
    "customer": "C1093826151",
    "age": "4",
    "gender": "M",
    "zipcodeOri": "28007",
    "merchant": "M348934600",
    "zipMerchant": "28007",
    "category": "es_transportation",
    "amount": Decimal("4.55"),
    "fraud": 0,
}


def csv(*lines: str, header: str = HEADER, end: str = "\n") -> bytes:
    return (end.join([header, *lines]) + end).encode()


def problem_of(data: bytes, parse=parse_transactions) -> str:
    with pytest.raises(InputError) as caught:
        parse(data, "input.csv")
    return str(caught.value)


# --- accepted ---------------------------------------------------------------------------------


def test_real_file_format_with_single_quotes_is_unquoted():
    table = parse_transactions(csv(QUOTED), "t.csv")
    assert table.schema == schema.TRANSACTIONS
    assert table.to_pylist() == [EXPECTED_QUOTED]


def test_unquoted_and_mixed_rows_parse_to_the_same_values():
    table = parse_transactions(csv(QUOTED, UNQUOTED, "1,'C7',3,'F',28007,M9,'28007',es_food,'12.5',1"), "t.csv")
    assert table["customer"].to_pylist() == ["C1093826151", "C352968107", "C7"]
    assert table["merchant"].to_pylist() == ["M348934600", "M1823072687", "M9"]
    assert table["amount"].to_pylist() == [Decimal("4.55"), Decimal("39.68"), Decimal("12.50")]
    assert table["fraud"].to_pylist() == [0, 0, 1]


def test_double_quoted_header_as_in_some_copies_of_the_file():
    header = ",".join(f'"{name}"' for name in HEADER.split(","))
    assert parse_transactions(csv(QUOTED, header=header), "t.csv").to_pylist() == [EXPECTED_QUOTED]


def test_double_quoted_values_and_whitespace_around_values():
    line = "0, \"C1093826151\" , ' 4 ','M',28007,\"'M348934600'\",28007,es_transportation, 4.55 ,0"
    assert parse_transactions(csv(line), "t.csv").to_pylist() == [EXPECTED_QUOTED]


def test_only_one_pair_of_quotes_is_stripped():
    with pytest.raises(InputError, match=r"line 2, field 'customer': not an id \(C and digits\)"):
        parse_transactions(csv("0,''C1'','4','M','28007','M3','28007','es_food',1,0"), "t.csv")


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("0,'X1','4','M','28007','M3','28007','es_food',1,0", "customer", "not an id (C and digits): 'X1'"),
        ("0,'C1','4','M','28007','M3x','28007','es_food',1,0", "merchant", "not an id (M and digits): 'M3x'"),
        ("0,'C1','4','M','28007','M','28007','es_food',1,0", "merchant", "not an id (M and digits): 'M'"),
        ("0,'C1','4','X','28007','M3','28007','es_food',1,0", "gender", "unknown gender 'X', expected F, M, E or U"),
    ],
)
def test_ids_and_genders_must_have_their_shape(row, field, message):
    with pytest.raises(InputError) as caught:
        parse_transactions(csv(row), "t.csv")
    assert (caught.value.problems[0].line, caught.value.problems[0].field, caught.value.problems[0].message) == (2, field, message)


def test_importance_ids_must_have_their_shape():
    with pytest.raises(InputError, match="field 'Target': not an id"):
        parse_importance(b"Source,Target,Weight,typeTrans,fraud\n'C1','shop',1.00,'es_food',0\n", "i.csv")


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbf" + csv(QUOTED),
        csv(QUOTED, end="\r\n"),
        csv(QUOTED) + b"\n\n \n",
        csv(QUOTED).rstrip(b"\n"),
        csv(QUOTED, end="\r\n") + b"\r\n",
    ],
    ids=["utf8-bom", "crlf", "trailing-blank-lines", "no-final-newline", "crlf-trailing-blank"],
)
def test_tolerated_variations(data: bytes):
    assert parse_transactions(data, "t.csv").to_pylist() == [EXPECTED_QUOTED]


def test_header_only_is_an_empty_table():
    table = parse_transactions(HEADER.encode() + b"\n", "t.csv")
    assert table.num_rows == 0 and table.schema == schema.TRANSACTIONS


def test_fast_and_careful_paths_agree():
    lines = [f"{i},'C{i % 7}','{i % 6}','F','28007','M{i % 5}','28007','es_food',{i}.{i % 100:02d},{i % 2}" for i in range(500)]
    clean = parse_transactions(csv(*lines), "t.csv")
    # A space forces the careful, value-by-value path.
    spaced = parse_transactions(csv(*[line.replace(",'F'", ", 'F'") for line in lines]), "t.csv")
    assert clean.equals(spaced)
    assert clean.num_rows == 500


def test_importance_file_in_the_real_format():
    data = csv("'C1093826151','M348934600',4.55,'es_transportation',0", "C2,M3,0,es_food,1", header=IMPORTANCE_HEADER)
    table = parse_importance(data, "i.csv")
    assert table.schema == schema.IMPORTANCE
    assert table.to_pylist() == [
        {"Source": "C1093826151", "Target": "M348934600", "Weight": Decimal("4.55"), "typeTrans": "es_transportation", "fraud": "0"},
        {"Source": "C2", "Target": "M3", "Weight": Decimal("0.00"), "typeTrans": "es_food", "fraud": "1"},
    ]


def test_read_from_a_path_names_the_path(tmp_path):
    path = write(tmp_path / "transactions.csv", csv(QUOTED, "x" + QUOTED))
    with pytest.raises(InputError) as caught:
        read_transactions(path)
    assert str(caught.value).startswith(f"{path}, line 3, field 'step'")


# --- rejected: the file -----------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\n\n", b"   \r\n", b"\xef\xbb\xbf"], ids=["empty", "newlines", "blank", "bom-only"])
def test_empty_file(data: bytes):
    assert problem_of(data) == "input.csv, line 1: the file is empty"


def test_not_utf8_names_the_line():
    data = csv(QUOTED, QUOTED.replace("es_transportation", "es_transportaci\xf3n"), QUOTED).replace("ó".encode(), b"\xf3")
    assert problem_of(data).startswith("input.csv, line 3: not UTF-8 text: byte 0xf3")


def test_utf16_file_is_rejected():
    assert "input.csv, line 1:" in problem_of(csv(QUOTED).decode().encode("utf-16"))


def test_binary_file_is_rejected():
    assert problem_of(csv(QUOTED) + b"\x00\x01\x02garbage") == ("input.csv, line 3: binary data: NUL byte (is this a CSV text file?)")


# --- rejected: the header ---------------------------------------------------------------------


def test_wrong_header_name():
    message = problem_of(csv(QUOTED, header=HEADER.replace("customer", "client")))
    assert message == "input.csv, line 1, field 'customer': header column 2 is 'client', expected 'customer'"


def test_missing_header_column():
    message = problem_of(csv(QUOTED, header=HEADER.replace(",fraud", "")))
    assert message.startswith("input.csv, line 1, field 'fraud': the header has 9 columns, expected 10")
    assert "missing: fraud" in message


def test_extra_header_column():
    message = problem_of(csv(QUOTED + ",1", header=HEADER + ",extra"))
    assert message.startswith("input.csv, line 1, field 'extra': the header has 11 columns, expected 10")
    assert "unexpected: 'extra'" in message


def test_columns_in_the_wrong_order():
    names = HEADER.split(",")
    names[0], names[1] = names[1], names[0]
    assert "right names in the wrong order" in problem_of(csv(QUOTED, header=",".join(names)))


def test_no_header_at_all():
    assert "no header: the first line should be step,customer" in problem_of(csv(QUOTED, header=QUOTED))


# --- rejected: rows and values ----------------------------------------------------------------


def test_missing_field_in_a_row():
    message = problem_of(csv(QUOTED, QUOTED.rsplit(",", 1)[0], QUOTED))
    assert message.startswith("input.csv, line 3, field 'fraud': 9 fields, expected 10")


def test_extra_field_in_a_row():
    assert problem_of(csv(QUOTED, QUOTED + ",7")).startswith(
        "input.csv, line 3, field 'fraud': 11 fields, expected 10: extra values after 'fraud'"
    )


def test_the_fraud_column_of_customer_importance_is_ignored():
    for fraud in ("x", "0.0", "", "''"):
        data = csv(f"'C1','M1',4.55,'es_food',{fraud}", f"'C2','M1',1.00,'es_food',{fraud}", header=IMPORTANCE_HEADER)
        assert parse_importance(data, "i.csv", columns=["Source", "Target", "Weight"]).num_rows == 2
        assert parse_importance(data, "i.csv")["fraud"].to_pylist() == [fraud.strip("'")] * 2


def test_a_quoted_header_keeps_the_fast_path(monkeypatch):
    quoted = ",".join(f'"{name}"' for name in HEADER.split(",")).replace('"customer"', ' "customer" ')
    data = csv(QUOTED, UNQUOTED, header=quoted)
    careful = []
    monkeypatch.setattr(parsing, "_read_strings", lambda *args: careful.append(1) or pytest.fail("the careful path was taken"))
    assert parse_transactions(data, "t.csv").num_rows == 2 and not careful


def test_a_carriage_return_without_a_line_feed_is_refused():
    """pyarrow would take it for a line end, the chunks' cutting would not: rows would move between chunks."""
    assert problem_of(f"{HEADER}\r\n{QUOTED}\r{QUOTED}\r\n".encode()).endswith(
        "line 2: a carriage return (CR) without a line feed: lines must end with LF or CR LF"
    )
    assert parse_transactions(csv(QUOTED, QUOTED, end="\r\n"), "t.csv").num_rows == 2


def test_ids_have_ascii_digits_on_either_path():
    for quoting in ("'C\u0661\u0662'", '"C\u0661\u0662"', "'C\uff11'"):
        assert "field 'customer': not an id (C and digits)" in problem_of(csv(QUOTED.replace("'C1093826151'", quoting)))


def test_truncated_last_line():
    data = csv(QUOTED, QUOTED) + QUOTED[:25].encode()
    message = problem_of(data)
    assert message.startswith("input.csv, line 4, field 'merchant': truncated last line: 5 fields, expected 10")


def test_truncated_last_line_cut_inside_the_last_field():
    data = csv(QUOTED) + QUOTED[: QUOTED.rindex(",") + 1].encode()
    assert problem_of(data) == "input.csv, line 3, field 'fraud': empty value (truncated last line?)"


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (QUOTED.replace("4.55", "4.5x"), "field 'amount': not a decimal number: '4.5x'"),
        (QUOTED.replace("4.55", "'abc'"), "field 'amount': not a decimal number: 'abc'"),
        (QUOTED.replace("4.55", "4.555"), "field 'amount': more than two decimals: '4.555'"),
        ("x" + QUOTED, "field 'step': not a whole number: 'x0'"),
        (QUOTED.replace("0,'C", "-1,'C", 1), "field 'step': not a whole number: '-1'"),
        (QUOTED.replace("0,'C", "1.5,'C", 1), "field 'step': not a whole number: '1.5'"),
        (QUOTED[:-1] + "2", "field 'fraud': expected 0 or 1, found '2'"),
        (QUOTED.replace("'C1093826151'", "''"), "field 'customer': empty value"),
        (QUOTED.replace("'M348934600'", ""), "field 'merchant': empty value"),
    ],
)
def test_bad_values_name_line_and_field(bad: str, expected: str):
    assert problem_of(csv(QUOTED, bad)) == f"input.csv, line 3, {expected}"


def test_trailing_zeros_past_two_decimals_are_exact_and_accepted():
    assert parse_transactions(csv(QUOTED.replace("4.55", "4.5500")), "t.csv")["amount"].to_pylist() == [Decimal("4.55")]


def test_blank_line_between_rows():
    assert problem_of(csv(QUOTED, "", QUOTED)) == "input.csv, line 3: blank line between rows"


@pytest.mark.parametrize("end", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_blank_lines_that_end_a_chunk_were_rows_of_its_file(end: str):
    """A file may end with blank lines; a chunk's last lines were counted among its file's rows."""
    chunk = csv(QUOTED, QUOTED, "", "  ", end=end)
    assert parse_transactions(chunk, "input.csv").num_rows == 2  # as a file: tolerated
    result = check_csv(chunk, "input.csv", schema.TRANSACTIONS, expected_rows=4)
    assert [(p.line, p.message) for p in result.problems] == [(4, "blank line between rows"), (5, "blank line between rows")]
    assert (result.table.num_rows, result.rows_read) == (2, 4)
    with pytest.raises(InputError, match="line 4: blank line between rows"):
        parse_transactions(chunk, "input.csv", expected_rows=4)


def test_a_chunk_with_fewer_rows_than_expected_but_no_blank_line_is_not_a_blank_line_problem():
    assert check_csv(csv(QUOTED, QUOTED), "input.csv", schema.TRANSACTIONS, expected_rows=3).problems == []
    assert check_csv(csv(QUOTED, QUOTED), "input.csv", schema.TRANSACTIONS, expected_rows=2).problems == []
    header_only = check_csv(csv(""), "input.csv", schema.TRANSACTIONS, expected_rows=1)
    assert [(p.line, p.message) for p in header_only.problems] == [(2, "blank line between rows")]
    assert [p.line for p in check_csv(b"", "input.csv", schema.TRANSACTIONS, expected_rows=1).problems] == [1]  # empty file only


def test_every_problem_is_listed_with_the_right_line_and_good_rows_are_kept():
    lines = [QUOTED, QUOTED + ",9", QUOTED, QUOTED.replace("4.55", "x"), QUOTED.replace("'M'", "'F'")]
    result = check_csv(csv(*lines), "input.csv", schema.TRANSACTIONS)
    assert [(p.line, p.field) for p in result.problems] == [(3, "fraud"), (5, "amount")]
    assert result.rows_read == 5
    assert result.table.num_rows == 3
    assert result.table["gender"].to_pylist() == ["M", "M", "F"]
    with pytest.raises(InputError, match=r"line 3, field .fraud.: 11 fields.*\(and 1 more problem\)"):
        result.table_or_raise("input.csv")


def test_a_row_with_several_bad_fields_reports_each():
    bad = "x,'C1','4','M','28007','M3','28007','es_food',y,0"
    result = check_csv(csv(bad), "input.csv", schema.TRANSACTIONS)
    assert [(p.line, p.field) for p in result.problems] == [(2, "step"), (2, "amount")]


def test_importance_with_non_numeric_weight():
    data = csv("'C1','M1',4.55,'es_food',0", "'C2','M1',heavy,'es_food',0", header=IMPORTANCE_HEADER)
    assert problem_of(data, parse_importance) == "input.csv, line 3, field 'Weight': not a decimal number: 'heavy'"


def test_importance_with_a_missing_column():
    data = csv("'C1','M1',4.55,0", header="Source,Target,Weight,fraud")
    assert "field 'typeTrans'" in problem_of(data, parse_importance)


# --- fuzz -------------------------------------------------------------------------------------


def _mutations():
    base = csv(QUOTED, UNQUOTED, QUOTED)
    return st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda cut, insert, at: base[:at] + insert + base[at + cut :],
            st.integers(0, 20),
            st.binary(max_size=8),
            st.integers(0, len(base)),
        ),
        st.text(alphabet=",'\"\n\r 0123456789.abcCM-\t", max_size=200).map(lambda t: (HEADER + "\n" + t).encode()),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_fuzz_returns_a_table_or_raises_input_error(data: bytes):
    try:
        table = parse_transactions(data, "fuzz.csv")
    except InputError as exc:
        assert exc.problems and all(p.line >= 1 for p in exc.problems)
    else:
        assert isinstance(table, pa.Table) and table.schema == schema.TRANSACTIONS


def _outcome(data: bytes, halves_from: int) -> object:
    """The parsed table, or the problems, with files of at least ``halves_from`` bytes read in halves."""
    saved, parsing._HALVES_MIN_BYTES = parsing._HALVES_MIN_BYTES, halves_from
    try:
        return parse_transactions(data, "t.csv").to_pylist()
    except InputError as exc:
        return exc.problems
    finally:
        parsing._HALVES_MIN_BYTES = saved


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_reading_in_halves_changes_nothing(data: bytes):
    assert _outcome(data, halves_from=1) == _outcome(data, halves_from=len(data) + 1)


@pytest.mark.parametrize("row", range(1, 9))
def test_a_quoted_line_end_where_the_halves_meet_is_still_found(row: int):
    lines = [f"{i},'C{i}','1','F','28007','M{i % 3}','28007','es_food',1.{i:02d},0" for i in range(8)]
    lines[row - 1] = lines[row - 1].replace("'es_food'", "'es_\nfood'")
    data = csv(*lines)
    halves, one_read = _outcome(data, halves_from=1), _outcome(data, halves_from=len(data) + 1)
    assert halves == one_read
    assert isinstance(halves, list) and halves and isinstance(halves[0], Problem)


def test_a_large_clean_file_read_in_halves_equals_the_careful_path():
    lines = [f"{i},'C{i % 97}','{i % 6}','M','28007','M{i % 13}','28007','es_food',{i}.{i % 100:02d},{i % 2}" for i in range(3000)]
    clean = csv(*lines)
    assert len(clean) >= parsing._HALVES_MIN_BYTES
    spaced = csv(*[line.replace(",'M',", ", 'M',") for line in lines])  # the careful path
    assert parse_transactions(clean, "t.csv").equals(parse_transactions(spaced, "t.csv"))


_MUST_FIND = (b"''", b",,", b",\n", b"\n,", b",\r")


@pytest.mark.parametrize("window", [1, 2, 3, 4, 64])
def test_byte_scan_finds_doubled_quotes_and_empty_values_and_counts_lines_across_windows(monkeypatch, window):
    monkeypatch.setattr(parsing, "_SCAN_WINDOW_BYTES", window)
    texts = [b"a'b\n'c'\nd''", b"''", b"x\n'a''b'\n", b"'a'\n'b'\n" * 5, b"a,b\nc,d\n" * 3, b"a,b\r\nc,d\r\n", b"a,b,"]
    texts += [b"a,b\n" * k + pair + b"c,d\n" for pair in _MUST_FIND for k in range(3)]
    for text in texts:
        raw = np.frombuffer(text, dtype=np.uint8)
        suspect = any(pair in text for pair in _MUST_FIND) or text.endswith(b",")
        expected = None if suspect else text.count(b"\n")
        assert parsing._count_lines_if_plain(raw, b"\r" in text) == expected, text


@pytest.mark.parametrize("row", range(1, 9))
@pytest.mark.parametrize("field", [0, 9])
def test_an_empty_value_where_the_halves_meet_is_still_found(row: int, field: int):
    lines = [f"{i},'C{i}','1','F','28007','M{i % 3}','28007','es_food',1.{i:02d},0" for i in range(8)]
    values = lines[row - 1].split(",")
    values[field] = ""
    lines[row - 1] = ",".join(values)
    data = csv(*lines)
    halves, one_read = _outcome(data, halves_from=1), _outcome(data, halves_from=len(data) + 1)
    assert halves == one_read
    assert isinstance(halves, list) and halves and isinstance(halves[0], Problem) and "empty value" in halves[0].message


def test_byte_scan_flags_every_pair_it_must_and_no_pair_of_letters_digits_or_quotes():
    ordinary = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_'.-")
    for first in range(256):
        for second in range(256):
            pair = bytes([first, second])
            for offset in (0, 1):  # the pair at an even and at an odd position
                text = b"x" * offset + pair + b"y"
                flagged = parsing._count_lines_if_plain(np.frombuffer(text, dtype=np.uint8), carriage_returns=True) is None
                if pair in _MUST_FIND:
                    assert flagged, pair
                elif first in ordinary and second in ordinary and pair not in (b"''", b".."):
                    assert not flagged, pair


def test_stripped_length_is_that_of_rstrip():
    for data in (b"", b"\n", b"a,b\r\n \t\n", b"a \tb", b"  "):
        assert parsing._stripped_length(data) == len(data.rstrip(b"\r\n\t "))


# --- a subset of the columns ------------------------------------------------------------------

FOLDED = ("customer", "gender", "merchant", "amount")


def _outcome_of_columns(data: bytes, columns: tuple[str, ...] | None, halves_from: int) -> object:
    saved, parsing._HALVES_MIN_BYTES = parsing._HALVES_MIN_BYTES, halves_from
    try:
        return parse_transactions(data, "t.csv", columns=columns).to_pylist()
    except InputError as exc:
        return exc.problems
    finally:
        parsing._HALVES_MIN_BYTES = saved


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations(), st.sampled_from([1, 1 << 30]))
def test_a_subset_of_columns_is_the_whole_parse_cut_down(data: bytes, halves_from: int):
    whole = _outcome_of_columns(data, None, halves_from)
    subset = _outcome_of_columns(data, FOLDED, halves_from)
    if isinstance(whole, list) and whole and isinstance(whole[0], Problem):
        assert subset == whole
    else:
        assert subset == [{name: row[name] for name in FOLDED} for row in whole]


@pytest.mark.parametrize("empty", ["", "''"])
@pytest.mark.parametrize("field", ["age", "zipcodeOri", "zipMerchant", "category"])
def test_an_empty_value_in_a_column_not_returned_is_still_found(field: str, empty: str):
    values = dict(EXPECTED_QUOTED, amount="4.55")
    values[field] = empty
    bad = ",".join(str(v) if k in ("step", "amount", "fraud") or v == empty else f"'{v}'" for k, v in values.items())
    message = problem_of(csv(QUOTED, bad, QUOTED), parse=lambda data, source: parse_transactions(data, source, columns=FOLDED))
    assert f"line 3, field '{field}'" in message and "empty value" in message


def test_the_columns_come_in_the_files_order():
    table = parse_transactions(csv(QUOTED, UNQUOTED), "t.csv", columns=["amount", "customer"])
    assert table.column_names == ["customer", "amount"]
    assert table.to_pylist()[0] == {"customer": "C1093826151", "amount": Decimal("4.55")}


def test_an_unknown_column_is_refused():
    with pytest.raises(ValueError, match="no such column: nope"):
        parse_transactions(csv(QUOTED), "t.csv", columns=["customer", "nope"])


_ODD_NUMBERS = ["0", "1", "007", "-0", "+5", "0x10", "1e3", "1E3", "5e-1", ".5", "5.", "+5.00", "-0.00", "4.5500", "4.555", "nan", "inf"]
_ODD_NUMBERS += ["999999999", "1000000000", "1234567890.12", "12345678901", "00000000001", "1.2.3", "\u0663"]
_ODD_NUMBERS += ["5.e1", "+.5", "-.5", "1E+2", "0.", "00.5", "1_000", "9999999999.99", "-9999999999.99", "99999999999.99"]
_ODD_NUMBERS += ["1e10", "1e9", "0.001e3", "1.2345e2", "1.23456e2", "12.5e-1", "1e-3", "-1e3", "1e+", "e5"]


def _careful_only(data: bytes, parse) -> object:
    saved = parsing._parse_clean
    parsing._parse_clean = lambda *args: None
    try:
        return _result(data, parse)
    finally:
        parsing._parse_clean = saved


def _result(data: bytes, parse) -> object:
    try:
        return parse(data, "t.csv").to_pylist()
    except InputError as exc:
        return exc.problems


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(*[st.sampled_from(_ODD_NUMBERS)] * 3), min_size=1, max_size=4), st.sampled_from([1, 1 << 30]))
def test_numbers_are_judged_alike_whichever_path_reads_them(rows, halves_from):
    """A number the careful path rejects is rejected by the fast one too: otherwise whether a value
    passes would depend on the rest of its chunk, and so on the chunk size."""
    lines = [f"{step},'C1','4','M','28007','M2','28007','es_food',{amount},{fraud}" for step, amount, fraud in rows]
    saved, parsing._HALVES_MIN_BYTES = parsing._HALVES_MIN_BYTES, halves_from
    try:
        for parse in (parse_transactions, lambda data, source: parse_transactions(data, source, columns=FOLDED)):
            data = csv(*lines)
            assert _result(data, parse) == _careful_only(data, parse)
        weights = csv(*(f"'C1','M2',{amount},'es_food',{fraud}" for _, amount, fraud in rows), header=IMPORTANCE_HEADER)
        assert _result(weights, parse_importance) == _careful_only(weights, parse_importance)
    finally:
        parsing._HALVES_MIN_BYTES = saved


@pytest.mark.parametrize("quoting", ["'C1093826151'", '"C1093826151"'], ids=["fast path", "careful path"])
def test_decimals_are_read_as_arrow_reads_them_and_whole_numbers_strictly(quoting: str):
    row = QUOTED.replace("'C1093826151'", quoting)
    amounts = {"1e3": Decimal("1000.00"), "5.e-1": Decimal("0.50"), "+.25": Decimal("0.25"), "000000000012.5": Decimal("12.50")}
    for text, value in amounts.items():
        assert parse_transactions(csv(row.replace("4.55", text)), "t.csv")["amount"].to_pylist() == [value]
    assert problem_of(csv(row.replace("4.55", "1e-3"))).endswith("field 'amount': more than two decimals: '1e-3'")
    assert problem_of(csv(row.replace("4.55", "12345678901"))).endswith("more than 10 digits before the point: '12345678901'")
    assert problem_of(csv(row.replace("4.55", "1e"))).endswith("field 'amount': not a decimal number: '1e'")
    for step in ("0x10", "-0", "+1", "1000000000"):
        assert problem_of(csv(step + row[1:])).endswith(f"field 'step': not a whole number: '{step}'")
