"""No input is held whole: chunk offsets by a windowed scan, CustomerImportance in batches.

Each reading by byte range is held to the whole-bytes reading it replaces: the same offsets, rows
and header; the same initial state; the same problems at the same lines of the whole file.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patternflow.engine.detection_engine import WEIGHT_COLUMNS, initial_state, initial_state_from_batches
from patternflow.errors import InputError, Problem
from patternflow.ingest import chunking, parsing
from patternflow.ingest.chunking import ChunkedFile, assemble, file_reader, line_batches
from patternflow.ingest.parsing import importance_batches, parse_importance, read_importance_batches
from patternflow.replay import replay
from tests.conftest import IMPORTANCE_HEADER
from tests.helpers import ChunkClock, importance_table, lively_config, read_files

_BOM = b"\xef\xbb\xbf"


def reader(data: bytes):
    return lambda start, end: data[start:end]


def whole_bytes_cut(data: bytes, size: int) -> tuple[list[int], int, bytes]:
    """The offsets, rows and header of the cut that scanned the whole bytes at once (the reading
    the windowed scan replaces), kept here as the reference."""
    start = len(_BOM) if data.startswith(_BOM) else 0
    end = len(data)
    while end > start and data[end - 1] in b"\r\n\t ":
        end -= 1
    found = np.flatnonzero(np.frombuffer(data, dtype=np.uint8)[start:end] == ord("\n")) + start
    rows = len(found)
    header_end = int(found[0]) + 1 if rows else end
    header = data[start:header_end].rstrip(b"\n") + b"\n"
    bounds = [int(b) + 1 for b in found[::size]]
    chunks = -(-rows // size)
    return [*bounds[:chunks], end], rows, header


# --- chunk offsets by a windowed scan -------------------------------------------------------

_lines = st.lists(st.text(alphabet="ab,'0 \t\r", max_size=30).map(lambda t: t.replace("\r", "\r\n")), max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.text(alphabet="abc,", max_size=12),
    lines=_lines,
    bom=st.booleans(),
    crlf=st.booleans(),
    ending=st.sampled_from(["", "\n", "\n\n", "\r\n", " \n\t", "\r\n\r\n  "]),
    size=st.integers(1, 7),
    window=st.sampled_from([1, 2, 3, 5, 16, 1 << 22]),
)
def test_the_windowed_scan_cuts_every_file_as_the_whole_bytes_did(header, lines, bom, crlf, ending, size, window):
    """Random line lengths, a BOM, CR LF, blank lines and whitespace at the end, windows smaller
    than a line: the same offsets, rows, header and chunks, from bytes and by byte range."""
    newline = "\r\n" if crlf else "\n"
    data = ((_BOM.decode() if bom else "") + newline.join([header, *lines]) + ending).encode()
    expected_offsets, expected_rows, expected_header = whole_bytes_cut(data, size)
    reads: list[tuple[int, int]] = []

    def read_range(start: int, end: int) -> bytes:
        reads.append((start, end))
        return data[start:end]

    with patch.object(chunking, "_SCAN_WINDOW_BYTES", window):
        scanned = ChunkedFile.scan(read_range, len(data), size)
        scan_reads = list(reads)
        in_memory = ChunkedFile(data, size)
    for cut in (scanned, in_memory):
        assert (cut.offsets(), cut.rows, cut.header) == (expected_offsets, expected_rows, expected_header)
        assert cut.chunks == len(expected_offsets) - 1
    assert [c.data for c in scanned] == [c.data for c in in_memory]
    assert [c.data for c in scanned] == [assemble(expected_header, data[a:b]) for a, b in pairwise(expected_offsets)]
    header_read = len(expected_header) + 1  # the header line, CR LF and all
    assert all(end - start <= max(window, len(_BOM), header_read) for start, end in scan_reads)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=80), size=st.integers(1, 5), window=st.sampled_from([1, 3, 64]))
def test_the_windowed_scan_agrees_on_any_bytes(data, size, window):
    with patch.object(chunking, "_SCAN_WINDOW_BYTES", window):
        scanned = ChunkedFile.scan(reader(data), len(data), size)
    assert (scanned.offsets(), scanned.rows, scanned.header) == whole_bytes_cut(data, size)


def test_a_file_is_read_by_range(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"0123456789")
    read = file_reader(path)
    assert (read(2, 5), read(8, 20), read(5, 5)) == (b"234", b"89", b"")


# --- CustomerImportance in batches ----------------------------------------------------------


def importance_rows(n: int, bad: dict[int, str] | None = None) -> list[str]:
    rows = [f"'C{i % 37}','M{i % 5}','{(i * 7919) % 2000 / 100 - 3:.2f}','es_food','0'" for i in range(n)]
    for index, row in (bad or {}).items():
        rows[index] = row
    return rows


def outcome(parse):
    """The rows read, or the problems and message of the error."""
    try:
        return parse()
    except InputError as exc:
        return exc.problems, str(exc)


def whole(data: bytes) -> object:
    return outcome(lambda: parse_importance(data, "i.csv", columns=WEIGHT_COLUMNS).to_pylist())


def batched(data: bytes, batch_bytes: int) -> object:
    def parse() -> list[dict]:
        tables = list(importance_batches(reader(data), len(data), "i.csv", columns=WEIGHT_COLUMNS, batch_bytes=batch_bytes))
        return [row for table in tables for row in table.to_pylist()]

    return outcome(parse)


_defects = st.sampled_from(
    [
        "'C1','shop',1.00,'es_food',0",
        "'C1','M1',heavy,'es_food',0",
        "'C1','M1',1.001,'es_food',0",
        "'C1','M1'",
        "'C1','M1',1.00,'es_food',0,9",
        "",
        "   ",
        ",,,,",
        "'C1','M1',,'es_food',0",
        "'C1','M1',1.00,'es\rfood',0",
        "'C1','M1',1.00,'es\x00food',0",
        "'C1','M1',1.00,'es\udcfffood',0",
        "'C1','M1', 2.50 ,'es_food',0",
        '"C1","M1","1.00","es_food","0"',
        "'C1','M1',1.00,'es_food',0   ",
    ]
)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 40),
    defects=st.dictionaries(st.integers(0, 39), _defects, max_size=3),
    header=st.sampled_from([IMPORTANCE_HEADER, '"Source","Target","Weight","typeTrans","fraud"', "Source,Target,W,typeTrans,fraud"]),
    bom=st.booleans(),
    crlf=st.booleans(),
    ending=st.sampled_from(["", "\n", "\n\n", "\r\n", " \n\t", "\n\r"]),
    batch_bytes=st.integers(1, 300),
)
def test_any_batching_reads_the_file_as_a_whole(n, defects, header, bom, crlf, ending, batch_bytes):
    """The same rows, or the same problems at the same lines of the whole file and so the same
    message, whatever the batch size: bad values, short and long rows, blank lines, binary data,
    text that is not UTF-8, stray CRs, a bad header, all in any batch."""
    newline = "\r\n" if crlf else "\n"
    rows = importance_rows(n, {i: d for i, d in defects.items() if i < n})
    data = (_BOM if bom else b"") + _encode(newline.join([header, *rows]) + ending)
    assert batched(data, batch_bytes) == whole(data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120), batch_bytes=st.integers(1, 40))
def test_any_batching_agrees_on_any_bytes(data, batch_bytes):
    assert batched(_encode(IMPORTANCE_HEADER + "\n") + data, batch_bytes) == whole(_encode(IMPORTANCE_HEADER + "\n") + data)


def test_a_bad_line_in_a_later_batch_is_named_by_its_line_in_the_whole_file(tmp_path):
    rows = importance_rows(2_000, {1_499: "'C1','M1',heavy,'es_food',0", 1_800: "'C1','shop',1.00,'es_food',0"})
    path = tmp_path / "CustomerImportance.csv"
    path.write_text("\n".join([IMPORTANCE_HEADER, *rows]) + "\n")
    assert len(list(line_batches(file_reader(path), path.stat().st_size, 1_024))) > 40
    with pytest.raises(InputError) as caught:
        list(read_importance_batches(path, batch_bytes=1_024))
    assert str(caught.value) == f"{path}, line 1501, field 'Weight': not a decimal number: 'heavy' (and 1 more problem)"
    assert [(p.line, p.field) for p in caught.value.problems] == [(1501, "Weight"), (1802, "Target")]
    with pytest.raises(InputError) as whole_file:
        parse_importance(path.read_bytes(), str(path))
    assert whole_file.value.problems == caught.value.problems


def test_batches_are_whole_lines_of_at_most_the_size_the_lines_allow():
    data = _BOM + b"h,h\r\n" + b"".join(b"%d,x\r\n" % i for i in range(100)) + b"\r\n\r\n"
    batches = list(line_batches(reader(data), len(data), 20))
    assert b"".join(b.data for b in batches) == data[len(_BOM) :]
    assert all(len(b.data) <= 20 and b.data.endswith(b"x\r\n") for b in batches[:-1])
    assert [b.last for b in batches] == [False] * (len(batches) - 1) + [True]
    assert [b.line for b in batches] == [1 + sum(p.data.count(b"\n") for p in batches[:i]) for i in range(len(batches))]
    blank_run = b"h,h\n1,x\n" + b"\n" * 50 + b"2,x\n"
    assert [b.data for b in line_batches(reader(blank_run), len(blank_run), 4)] == [b"h,h\n", b"1,x\n", b"\n" * 50 + b"2,x\n"]


# --- the initial state from batches ---------------------------------------------------------

_weight = st.decimals(min_value=Decimal("-50.00"), max_value=Decimal("50.00"), places=2, allow_nan=False, allow_infinity=False)
_importance_rows = st.lists(
    st.tuples(st.sampled_from(["C1", "C2", "C10", "C3"]), st.sampled_from(["M1", "M2", "M10"]), _weight), max_size=40
)


def state_tables(state) -> tuple:
    return state.customers, state.merchants, state.pairs, state.emitted, state.pending


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_importance_rows, cuts=st.lists(st.integers(0, 40), max_size=6))
def test_any_batching_gives_the_initial_state_of_one_batch(rows, cuts):
    """Weights with cents, negative weights, repeated pairs across batches, empty batches: the
    same customers, merchants and pairs (ids and weight ranks) as the table in one batch."""
    table = importance_table(rows)
    bounds = sorted({0, len(rows), *(min(c, len(rows)) for c in cuts)})
    batches = [table.slice(a, b - a) for a, b in pairwise(bounds)] + [table.slice(0, 0)]
    one = initial_state(table)
    assert all(a.equals(b) for a, b in zip(state_tables(initial_state_from_batches(batches)), state_tables(one), strict=True))
    assert all(a.equals(b) for a, b in zip(state_tables(initial_state(iter(batches))), state_tables(one), strict=True))


def test_no_batches_is_an_empty_file():
    empty = initial_state(importance_table([]))
    assert all(a.equals(b) for a, b in zip(state_tables(initial_state_from_batches([])), state_tables(empty), strict=True))
    assert empty.pairs.num_rows == 0


def test_ranks_from_batches_compare_the_mean_weights_exactly():
    rows = [("C1", "M1", "1.00"), ("C1", "M1", "2.01"), ("C2", "M1", "1.50"), ("C3", "M1", "-0.01"), ("C2", "M1", "1.51")]
    state = initial_state_from_batches([importance_table(rows[:2]), importance_table(rows[2:4]), importance_table(rows[4:])])
    ranks = dict(zip(state.pairs.column("customer").to_pylist(), state.pairs.column("weight_rank").to_pylist(), strict=True))
    customers = state.customers.column(0).to_pylist()
    # C1: 3.01 / 2 = 1.505, C2: 3.01 / 2 = 1.505, C3: -0.01
    assert {customers[c]: r for c, r in ranks.items()} == {"C1": 2, "C2": 2, "C3": 1}


def test_a_bad_batch_stops_the_start_with_its_own_error():
    """DuckDB reads the batches as a stream; the error a batch raises (a bad file) reaches the
    caller as it was raised, naming its file and line, not as DuckDB's message about it."""
    read = []

    def batches():
        read.append(1)
        yield importance_table([("C1", "M1", "1.00")])
        read.append(2)
        raise InputError("CustomerImportance.csv", [Problem(7, "Weight", "'x' is not a decimal")])
        yield importance_table([("C2", "M1", "2.00")])  # never reached

    with pytest.raises(InputError, match=r"CustomerImportance\.csv, line 7") as caught:
        initial_state_from_batches(batches())
    assert read == [1, 2] and caught.value.problems[0].field == "Weight"


# --- replay with many windows and batches ---------------------------------------------------


def test_replay_with_tiny_windows_and_batches_writes_the_same_files(small_banksim, tmp_path, monkeypatch):
    """Thousands of windows and batches, and neither file is ever read whole."""
    config = lively_config(2_000)
    replay(small_banksim.transactions, small_banksim.importance, tmp_path / "default", config, clock=ChunkClock())
    expected = read_files(tmp_path / "default")
    monkeypatch.setattr(chunking, "_SCAN_WINDOW_BYTES", 4_096)
    monkeypatch.setattr(parsing, "IMPORTANCE_BATCH_BYTES", 4_096)
    inputs = {Path(small_banksim.transactions).resolve(), Path(small_banksim.importance).resolve()}
    read_bytes = Path.read_bytes

    def never_whole(path: Path) -> bytes:
        assert path.resolve() not in inputs, f"{path} was read whole"
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", never_whole)
    batches = list(line_batches(file_reader(small_banksim.importance), Path(small_banksim.importance).stat().st_size, 4_096))
    assert len(batches) > 100
    replay(small_banksim.transactions, small_banksim.importance, tmp_path / "tiny", config, clock=ChunkClock())
    assert read_files(tmp_path / "tiny") == expected
    assert len(expected) >= 3


def test_a_table_and_its_batches_are_one_input():
    """``initial_state`` takes what a stream's loader gives: a table or its batches."""
    table = importance_table([("C1", "M1", "1.00"), ("C2", "M1", "2.00")])
    assert initial_state([table.slice(0, 1), table.slice(1)]).pairs.equals(initial_state(table).pairs)
    assert isinstance(table, pa.Table)
