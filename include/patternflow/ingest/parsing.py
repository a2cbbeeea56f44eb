"""Parse the transactions and CustomerImportance CSV files into typed Arrow tables.

What is tolerated (silently normalised):
- every value wrapped in one pair of single quotes, as in the BankSim files (``'C1093826151'``),
  or not quoted at all, or CSV double quotes; whitespace around values;
- a header whose names are wrapped in double (or single) quotes;
- a UTF-8 byte-order mark, CRLF line ends, a missing newline after the last line, blank lines
  at the end of the file; a file with a header and no rows (an empty table);
- any value in a column the schema marks ignored (CustomerImportance's fraud), kept as text.

What is rejected, each problem naming the file, the 1-based line and the field:
- an empty file, bytes that are not UTF-8, NUL bytes (binary data), a carriage return that does
  not end a line with a line feed (CR LF);
- a header that is not exactly the contract's column names in the contract's order;
- a row with too few or too many fields (called a truncated last line when it is the last line
  and the file does not end with a newline), a blank line between rows;
- an empty value; a step that is not a whole number; a fraud flag other than 0 or 1;
- an amount or weight that is not a decimal number as Arrow reads it (``4.55``, ``.5``, ``1e3``),
  or does not fit decimal128(12, 2) exactly: non-zero digits past two decimals, more than 10
  digits before the point. Both paths judge every value alike, whatever else its file holds.
- an id that does not look like one (a customer is C and digits, a merchant M and digits, as
  'C1093826151' and 'M348934600'), a gender other than F, M, E (enterprise) or U (unknown).

Parsing is vectorised (pyarrow's CSV reader and compute kernels); rows are never looped over in
Python, so a 10,000-row chunk parses in a few milliseconds.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from patternflow.errors import InputError, Problem
from patternflow.ingest import columns, schema, stringbytes
from patternflow.ingest.chunking import LineBatch, ReadRange, file_reader, line_batches

_BOM = b"\xef\xbb\xbf"
_MAX_SHOWN_VALUE = 40
IMPORTANCE_BATCH_BYTES = 16 << 20
"""CustomerImportance is parsed in batches of whole lines of about this size (``importance_batches``)."""

# One regular expression a kind of column; a value that does not match is a problem.
# The fast path checks whole numbers and flags on their bytes (stringbytes), from the same limit.
_WHOLE_NUMBER_DIGITS = 9
_WHOLE_NUMBER = rf"^[0-9]{{1,{_WHOLE_NUMBER_DIGITS}}}$"
_FLAG = r"^[01]$"
# A decimal is what Arrow's decimal parser reads (both paths convert with it): an optional sign,
# digits with an optional point, an optional exponent; exact in decimal128(12, 2), so at most two
# non-zero decimals and at most 10 digits before the point. Most values are plain, and known to
# convert without asking Arrow: 1 to 10 digits, then at most two decimals (and zeros).
_DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_PLAIN_DECIMAL = r"^[+-]?[0-9]{1,10}(\.[0-9]{0,2}0*)?$"


# Columns whose values follow a shape: (letter the id starts with, or None; allowed values, or None).
_ID_PREFIX = {"customer": "C", "merchant": "M", "Source": "C", "Target": "M"}
_GENDERS = ("F", "M", "E", "U")
_GENDER_BYTES = np.zeros(256, dtype=bool)
_GENDER_BYTES[[ord(g) for g in _GENDERS]] = True


@dataclass(frozen=True)
class ParseResult:
    """The rows that are valid, plus every problem found in the others (or in the file)."""

    table: pa.Table
    problems: list[Problem]
    rows_read: int

    def table_or_raise(self, source: str) -> pa.Table:
        if self.problems:
            raise InputError(source, self.problems)
        return self.table


def parse_transactions(
    data: bytes,
    source: str,
    *,
    two_threads: bool = True,
    columns: Sequence[str] | None = None,
    expected_rows: int | None = None,
) -> pa.Table:
    """Parse a whole transactions CSV (or one chunk of it); raise ``InputError`` on any defect.

    ``two_threads=False`` for a caller that already parses on a thread of its own beside other work;
    ``columns`` and ``expected_rows``: see ``check_csv``.
    """
    checked = check_csv(data, source, schema.TRANSACTIONS, two_threads=two_threads, columns=columns, expected_rows=expected_rows)
    return checked.table_or_raise(source)


def parse_importance(data: bytes, source: str, *, columns: Sequence[str] | None = None) -> pa.Table:
    """Parse a CustomerImportance CSV; raise ``InputError`` on any defect. ``columns``: see ``check_csv``."""
    return check_csv(data, source, schema.IMPORTANCE, columns=columns).table_or_raise(source)


def importance_batches(
    read_range: ReadRange,
    total: int,
    source: str,
    *,
    columns: Sequence[str] | None = None,
    batch_bytes: int | None = None,
) -> Iterator[pa.Table]:
    """A CustomerImportance file of ``total`` bytes, read through ``read_range``, parsed batch by
    batch (``chunking.line_batches``, of ``batch_bytes``, by default ``IMPORTANCE_BATCH_BYTES``):
    its valid rows, one table a batch, so that a caller that aggregates them never holds the whole
    file or its whole table.

    A bad file raises the ``InputError`` that ``parse_importance`` raises for the whole of it, once
    every batch is read: the same problems at the same lines of the whole file. A problem of the
    whole file (binary data, not UTF-8, a stray CR: the first of each, in that order of
    precedence) hides a bad header, and a bad header hides the rows, as they do there. No table
    is yielded after the first problem; the caller's work on the earlier ones is thrown away.
    """
    found = _BatchProblems()
    header, first_start = b"", 0
    for batch in line_batches(read_range, total, batch_bytes or IMPORTANCE_BATCH_BYTES):
        if batch.line == 1:
            first_start = batch.start  # after a byte-order mark: offsets count from there
        found.note_file_problems(batch, batch.start - first_start)
        if found.whole_file or found.header:
            continue  # only the problems of the whole file can still matter
        data = batch.data if batch.line == 1 else header + batch.data
        if batch.line == 1:
            header = data[: data.find(b"\n") + 1]
        result = check_csv(data, source, schema.IMPORTANCE, columns=columns)
        if result.problems and not result.rows_read:  # empty, or a bad header: only in the first batch
            found.header = result.problems
        elif result.problems:
            shift = batch.line - 2 if batch.line > 1 else 0  # a later batch's line 2 is its first line
            found.rows += [replace(p, line=p.line + shift) for p in result.problems]
        elif not found.rows:
            yield result.table
    problems = found.first()
    if problems:
        raise InputError(source, problems)


def read_importance_batches(
    path: str | Path, *, columns: Sequence[str] | None = None, batch_bytes: int | None = None
) -> Iterator[pa.Table]:
    """``importance_batches`` over a local file (a missing file raises at once, not when read)."""
    return importance_batches(file_reader(path), Path(path).stat().st_size, str(path), columns=columns, batch_bytes=batch_bytes)


def check_importance(read_range: ReadRange, total: int, source: str, *, batch_bytes: int | None = None) -> None:
    """Raise the ``InputError`` of a bad CustomerImportance file, reading it batch by batch."""
    for _ in importance_batches(read_range, total, source, batch_bytes=batch_bytes):
        pass


class _BatchProblems:
    """What the batches of one file have shown wrong so far, ranked as the whole file's check
    ranks it."""

    def __init__(self) -> None:
        self.nul: Problem | None = None
        self.utf8: Problem | None = None
        self.carriage_return: Problem | None = None
        self.header: list[Problem] = []
        self.rows: list[Problem] = []

    @property
    def whole_file(self) -> bool:
        return bool(self.nul or self.utf8 or self.carriage_return)

    def note_file_problems(self, batch: LineBatch, offset: int) -> None:
        """The file's first NUL byte, byte that is not UTF-8 and stray CR so far; ``offset``:
        where the batch starts after the byte-order mark. The last batch is checked without the
        file's trailing whitespace, as the whole file is."""
        data = batch.data
        end = _stripped_length(data) if batch.last else len(data)
        lines = batch.line - 1
        self.nul = self.nul or _shifted(_nul_problem(data, end), lines)
        self.utf8 = self.utf8 or _shifted(_utf8_problem(data, end, offset), lines)
        self.carriage_return = self.carriage_return or _shifted(_line_end_problem(data, end), lines)

    def first(self) -> list[Problem]:
        """The problems the whole file's check would report, if any."""
        for problem in (self.nul, self.utf8, self.carriage_return):
            if problem:
                return [problem]
        return self.header or self.rows


def _shifted(problem: Problem | None, lines: int) -> Problem | None:
    return replace(problem, line=problem.line + lines) if problem else None


def read_transactions(path: str | Path) -> pa.Table:
    return parse_transactions(Path(path).read_bytes(), str(path))


def read_importance(path: str | Path, *, columns: Sequence[str] | None = None) -> pa.Table:
    return parse_importance(Path(path).read_bytes(), str(path), columns=columns)


def check_csv(
    data: bytes,
    source: str,
    target: pa.Schema,
    *,
    two_threads: bool = True,
    columns: Sequence[str] | None = None,
    expected_rows: int | None = None,
) -> ParseResult:
    """Parse ``data`` against ``target`` and keep going past bad rows.

    Returns the valid rows typed as ``target`` and the list of problems. File-level defects
    (empty, encoding, header) leave no valid rows. A clean file of ``_HALVES_MIN_BYTES`` or more
    is read as two halves on two threads unless ``two_threads`` is False.

    ``columns`` (default: all) are the columns returned, in ``target``'s order. Every column is
    checked whatever it says, but in a clean file the plain text ones among the others are not
    converted: the engine reads 4 of the 10 transaction columns, and converting age, the two
    zipcodes and category cost about 0.3 ms of a chunk's 5 to 7.

    ``expected_rows``: for a chunk cut from a larger file, the lines it holds after its header.
    A file may end with blank lines, but the blank lines a chunk ends with were counted among
    that file's rows, so they stood between rows there: they are reported as such.
    """
    result = _check_csv(data, source, target, two_threads, columns)
    file_level = result.problems and not result.rows_read  # empty, not text, bad header: no row was read
    if expected_rows is None or result.rows_read >= expected_rows or file_level:
        return result
    blank_tail = max(0, data.count(b"\n", _stripped_length(data)) - 1)  # the last row's own line end is not one
    first = result.rows_read + 2  # the header is line 1
    blank = [
        Problem(line, None, "blank line between rows") for line in range(first, first + min(blank_tail, expected_rows - result.rows_read))
    ]
    if not blank:
        return result
    return ParseResult(result.table, sorted(result.problems + blank, key=lambda p: p.line), result.rows_read + len(blank))


def _check_csv(data: bytes, source: str, target: pa.Schema, two_threads: bool, columns: Sequence[str] | None) -> ParseResult:
    selection = _selection(target, None if columns is None else tuple(columns))
    wanted, empty = selection.wanted, selection.empty
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    # The file without trailing whitespace is data[:end]; it is only copied out (body) for the
    # detailed path, so that a large clean file is never held twice.
    end = _stripped_length(data)
    if not end:
        return ParseResult(empty, [Problem(1, None, "the file is empty")], 0)
    file_problem = _encoding_problem(data, end) or _line_end_problem(data, end)
    if file_problem:
        return ParseResult(empty, [file_problem], 0)

    header_end = data.find(b"\n", 0, end)
    header_line = data[:end] if header_end < 0 else data[:header_end]
    header_problem = _header_problem(header_line.decode("utf-8"), target.names)
    if header_problem:
        return ParseResult(empty, [header_problem], 0)
    if header_end < 0:
        return ParseResult(empty, [], 0)

    fast = _parse_clean(data, end, target, two_threads, selection)
    if fast is not None:
        return ParseResult(fast.select(wanted), [], fast.num_rows)

    body = data[:end]
    ends_with_newline = data.rstrip(b"\t ").endswith(b"\n")
    last_line = body.count(b"\n") + 1
    raw, problems = _read_strings(body, target.names, last_line, ends_with_newline)
    rows_read = raw.num_rows + len(problems)
    lines = _line_numbers(raw.num_rows, [p.line for p in problems])
    values = {name: _unquote(raw.column(name)) for name in target.names}

    bad = np.zeros(raw.num_rows, dtype=bool)
    blank = np.ones(raw.num_rows, dtype=bool)
    for name in target.names:
        blank &= _to_numpy(pc.equal(pc.utf8_length(values[name]), 0))
    for row in np.flatnonzero(blank):
        problems.append(Problem(int(lines[row]), None, "blank line between rows"))
    bad |= blank

    truncated = not ends_with_newline
    for field in target:
        column = values[field.name]
        field_bad = blank.copy()
        for mask, message in _value_checks(column, field):
            mask &= ~field_bad
            for row in np.flatnonzero(mask):
                line = int(lines[row])
                problems.append(Problem(line, field.name, message(column[int(row)].as_py(), truncated and line == last_line)))
            field_bad |= mask
        bad |= field_bad

    good = pa.array(~bad)
    arrays = [_cast(pc.filter(values[f.name], good), f.type) for f in target]
    table = pa.Table.from_arrays(arrays, schema=target)
    problems.sort(key=lambda p: p.line)
    return ParseResult(table.select(wanted), problems, rows_read)


@dataclass(frozen=True)
class _Selection:
    wanted: tuple[str, ...]
    """The columns returned, in the file's order."""
    converted: pa.Schema
    """The columns the fast path reads: those wanted, and those whose values it checks. Decimals
    as decimals; whole numbers and flags as text, checked with the slow path's rules, then
    converted if wanted (pyarrow's integer parsing would also take ``0x10`` or ``-0``)."""
    empty: pa.Table
    """No rows, the wanted columns."""


@cache  # the same few selections for every chunk of a stream
def _selection(target: pa.Schema, names: tuple[str, ...] | None) -> _Selection:
    if names is None:
        wanted = target.names
    else:
        unknown = sorted(set(names) - set(target.names))
        if unknown:
            raise ValueError(f"no such column: {', '.join(unknown)}")
        wanted = [name for name in target.names if name in names]
    plain = {f.name for f in target if f.type == pa.string() and f.name not in _ID_PREFIX and f.name != "gender"}
    read = [f for f in target if f.name in wanted or f.name not in plain]
    converted = pa.schema([(f.name, f.type if pa.types.is_decimal(f.type) else pa.string()) for f in read])
    return _Selection(tuple(wanted), converted, columns.empty(pa.schema([target.field(name) for name in wanted])))


# Bytes that never occur in a clean file: their absence rules out stray whitespace and CSV
# double quotes, which the slow path handles.
_NOT_CLEAN = (b'"', b" ", b"\t")
_NEWLINE, _COMMA = ord("\n"), ord(",")


def _word(pair: bytes) -> np.uint16:
    """Two adjacent bytes as the 16-bit word numpy reads them as (native byte order)."""
    return np.frombuffer(pair, dtype=np.uint16)[0]


# Byte pairs the scan looks for (see _count_lines_if_plain): a doubled single quote, and an empty
# field, which is a comma next to a comma or a line end.
_DOUBLED_QUOTE = _word(b"''")
_EMPTY_BEFORE_CR = _word(b",\r")
# ',' (0x2C) and '\n' (0x0A) differ in the bits 0x26: with those bits set, both are 0x2E, so one
# comparison finds ",,", ",\n" and "\n,". It also finds pairs of '(', '*', '.' and a few control
# bytes, which only send such a file to the slow path.
_EMPTY_FIELD_MASK = _word(b"\x26\x26")
_EMPTY_FIELD_MASKED = _word(b"\x2e\x2e")
# pyarrow's reader converts a file block by block, each ending at a line end: a chunk's half
# (about 400 KB) is one block, and so one Arrow chunk a column downstream.
_FAST_BLOCK_BYTES = 1 << 20
# A clean file at least this large is read as two halves on two threads.
_HALVES_MIN_BYTES = 1 << 16
# Byte scans go through a large file in windows of this size, to bound their temporary arrays.
_SCAN_WINDOW_BYTES = 1 << 22
_TRAILING_WHITESPACE = b"\r\n\t "


def _stripped_length(data: bytes) -> int:
    """``len(data.rstrip(b"\\r\\n\\t "))`` without copying the data."""
    end = len(data)
    while end and data[end - 1] in _TRAILING_WHITESPACE:
        end -= 1
    return end


def _parse_clean(data: bytes, end: int, target: pa.Schema, two_threads: bool, selection: _Selection) -> pa.Table | None:
    """The fast path for a well-formed file (``data[:end]``): the wanted columns typed, or None
    to check in detail.

    pyarrow splits the rows with single quotes as the quote character and converts the decimals;
    the other columns to check or keep (``_Selection.converted``) come as text, checked on their
    bytes and converted if wanted. Any Arrow error, a row count other than the line count (a
    quoted line end), or anything the checks cannot rule out sends the file to the slow path,
    which finds and names every problem. The byte scan rules out empty values, the only defect
    the plain text columns that are not returned can have.
    """
    second = _start_second_half(data, end, target, selection.converted) if two_threads else None
    try:
        rows_start = data.find(b"\n", 0, end) + 1  # the header, checked on its own, may be quoted or spaced
        if any(data.find(marker, rows_start, end) >= 0 for marker in _NOT_CLEAN):
            return None
        lines = _count_lines_if_plain(np.frombuffer(data, dtype=np.uint8, count=end), data.find(b"\r", 0, end) >= 0)
        if lines is None:
            return None
        table = _read_fields(pa.py_buffer(data)[: second.start if second else end], target, selection.converted, skip_rows=1)
        if second:
            table = pa.concat_tables([table, second.rows.result()])
        if table.num_rows != lines:
            return None
        if not all(_has_its_shape(table.column(name), target.field(name)) for name in selection.converted.names):
            return None
        typed = selection.empty.schema
        return pa.Table.from_arrays([_cast(table.column(f.name), f.type) for f in typed], schema=typed)
    except pa.ArrowException:  # a row of the wrong width, a decimal with non-zero digits past two decimals
        return None
    finally:
        if second:
            wait([second.rows])  # the helper reads data: done with it before this call returns


def _has_its_shape(column: pa.ChunkedArray, field: pa.Field) -> bool:
    """Whether every value of a column of a clean file has the shape its field requires."""
    if column.null_count:
        return False
    if field.name in _ID_PREFIX:
        return stringbytes.all_ids(column, _ID_PREFIX[field.name])
    if field.name == "gender":
        letters = stringbytes.single_bytes(column)
        return letters is not None and bool(_GENDER_BYTES[letters].all())
    if pa.types.is_decimal(field.type):  # converted by the reader as by the slow path, but for its precision
        units = columns.decimal_units(column)
        largest = 10**field.type.precision - 1
        return units is not None and (not len(units) or (-largest <= units.min() and units.max() <= largest))
    if field.type == pa.int8():
        return stringbytes.all_flags(column)
    if pa.types.is_integer(field.type):
        return stringbytes.all_whole_numbers(column, _WHOLE_NUMBER_DIGITS)
    return True


@dataclass(frozen=True)
class _SecondHalf:
    start: int
    rows: Future[pa.Table]


def _start_second_half(data: bytes, end: int, target: pa.Schema, converted: pa.Schema) -> _SecondHalf | None:
    """Start reading the second half of ``data[:end]`` (``_HALVES_MIN_BYTES`` or more) on the
    helper thread, while the caller scans the bytes and reads the first half.

    The halves meet at a line end: a quoted line end cut there makes a half fail or come out
    with fewer rows than lines, which the row count check catches, as it does for pyarrow's own
    blocks. (pyarrow's multi-threaded reader was seen to fail at random with "a chunk failed
    converting for an unknown reason" on a clean file; each half is read on one thread.)
    """
    middle = data.find(b"\n", end // 2, end) + 1 if end >= _HALVES_MIN_BYTES else 0
    if not middle:
        return None
    return _SecondHalf(middle, _second_thread().submit(_read_fields, pa.py_buffer(data)[middle:end], target, converted, 0))


def _read_fields(body: pa.Buffer, target: pa.Schema, converted: pa.Schema, skip_rows: int) -> pa.Table:
    """The ``converted`` columns of a CSV body with ``target``'s columns; pyarrow still splits
    every row into all of them, and fails on a row with too few or too many fields."""
    return pacsv.read_csv(
        pa.BufferReader(body),
        read_options=pacsv.ReadOptions(use_threads=False, skip_rows=skip_rows, column_names=target.names, block_size=_FAST_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(quote_char="'", ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types=converted,
            include_columns=converted.names,
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


_helper_lock = threading.Lock()
_helper: tuple[int, ThreadPoolExecutor] | None = None


def _second_thread() -> ThreadPoolExecutor:
    """This process's parsing helper thread. A pool inherited through ``fork`` (Airflow's task
    processes) has lost its thread and would never run a task, so each process makes its own."""
    global _helper
    with _helper_lock:
        if _helper is None or _helper[0] != os.getpid():
            _helper = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="patternflow-parse"))
        return _helper[1]


def _count_lines_if_plain(raw: np.ndarray, carriage_returns: bool) -> int | None:
    """The newlines in ``raw``, or None when two single quotes stand side by side ('') or a
    value may be empty (a comma next to a comma or a line end; see ``_EMPTY_FIELD_MASK``).

    numpy over windows of the data: a byte search for a pair of bytes is slow on text dense in
    its first byte, and one pass over a whole large file would allocate arrays the size of the
    file. Two adjacent bytes are one 16-bit word at an even or at an odd offset, so each window
    is compared as words twice. ``carriage_returns``: whether ``raw`` holds any, so that a comma
    before a CR LF line end is looked for as well.
    """
    lines = 0
    for first in range(0, len(raw), _SCAN_WINDOW_BYTES):
        window = raw[first : first + _SCAN_WINDOW_BYTES + 1]  # one byte of overlap for a pair across windows
        for offset in (0, 1):
            words = window[offset : offset + (len(window) - offset) // 2 * 2].view(np.uint16)
            if (words == _DOUBLED_QUOTE).any() or ((words | _EMPTY_FIELD_MASK) == _EMPTY_FIELD_MASKED).any():
                return None
            if carriage_returns and (words == _EMPTY_BEFORE_CR).any():
                return None
        lines += np.count_nonzero(window[:_SCAN_WINDOW_BYTES] == _NEWLINE)
    if len(raw) and raw[-1] == _COMMA:  # an empty last value: no line end follows it
        return None
    return lines


def _encoding_problem(data: bytes, end: int) -> Problem | None:
    """NUL bytes or bytes that are not UTF-8 in ``data[:end]``."""
    return _nul_problem(data, end) or _utf8_problem(data, end)


def _nul_problem(data: bytes, end: int) -> Problem | None:
    """The first NUL byte in ``data[:end]``."""
    nul = data.find(b"\x00", 0, end)
    if nul >= 0:
        return Problem(data.count(b"\n", 0, nul) + 1, None, "binary data: NUL byte (is this a CSV text file?)")
    return None


def _utf8_problem(data: bytes, end: int, offset: int = 0) -> Problem | None:
    """The first byte that is not UTF-8 in ``data[:end]``; ``offset``: where ``data`` starts in
    its file, for the offset the message names."""
    if data.isascii():
        return None
    try:
        data[:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return Problem(line, None, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start + offset}")
    return None


def _line_end_problem(data: bytes, end: int) -> Problem | None:
    """A carriage return that is not part of a CR LF line end in ``data[:end]``. The reader would
    take it for a line end of its own, unlike the chunks' cutting, which counts LFs: rows would
    move between chunks."""
    if data.find(b"\r", 0, end) < 0 or data.count(b"\r", 0, end) == data.count(b"\r\n", 0, end):
        return None
    at = data.find(b"\r", 0, end)
    while data[at + 1 : at + 2] == b"\n":
        at = data.find(b"\r", at + 1, end)
    return Problem(data.count(b"\n", 0, at) + 1, None, "a carriage return (CR) without a line feed: lines must end with LF or CR LF")


def _strip_name(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1].strip()
    return name


def _header_problem(line: str, expected: list[str]) -> Problem | None:
    names = [_strip_name(n) for n in line.rstrip("\r").split(",")]
    if names == expected:
        return None
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    if len(names) != len(expected):
        detail = f"the header has {len(names)} columns, expected {len(expected)} ({','.join(expected)})"
        if missing:
            detail += "; missing: " + ", ".join(missing)
        if extra:
            detail += "; unexpected: " + ", ".join(repr(n) for n in extra)
        return Problem(1, missing[0] if missing else extra[0] if extra else None, detail)
    position = next(i for i, (got, want) in enumerate(zip(names, expected, strict=True)) if got != want)
    got, want = names[position], expected[position]
    if not missing and not extra:
        detail = f"the header has the right names in the wrong order: {','.join(names)}, expected {','.join(expected)}"
    elif not any(n in expected for n in names):
        detail = f"no header: the first line should be {','.join(expected)}, found {_show(line)}"
    else:
        detail = f"header column {position + 1} is {_show(got)}, expected {want!r}"
    return Problem(1, want, detail)


def _read_strings(body: bytes, names: list[str], last_line: int, ends_with_newline: bool) -> tuple[pa.Table, list[Problem]]:
    """Read every field as a string; rows with the wrong number of fields become problems."""
    problems: list[Problem] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        line = row.number if row.number is not None else -1
        if row.actual_columns < row.expected_columns:
            field = names[row.actual_columns]
            detail = f"{row.actual_columns} fields, expected {row.expected_columns}: '{field}' and after are missing"
        else:
            field = names[-1]
            detail = f"{row.actual_columns} fields, expected {row.expected_columns}: extra values after '{field}'"
        if line == last_line and not ends_with_newline:
            detail = "truncated last line: " + detail
        problems.append(Problem(line, field, f"{detail} (row text: {_show(row.text)})"))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(use_threads=False, skip_rows=1, column_names=names, block_size=1 << 26),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    return table, problems


def _line_numbers(rows: int, skipped_lines: list[int]) -> np.ndarray:
    """The physical line of each parsed row: rows follow the header, less the lines skipped."""
    lines = np.arange(2, 2 + rows + len(skipped_lines), dtype=np.int64)
    if skipped_lines:
        lines = np.setdiff1d(lines, np.asarray(skipped_lines, dtype=np.int64), assume_unique=True)
    return lines


def _unquote(column: pa.ChunkedArray) -> pa.Array:
    """Strip whitespace and one pair of surrounding single quotes (the BankSim style).

    CSV double quotes are normally removed by the reader; a pair it left because of whitespace
    around it is removed here too, before the single quotes.
    """
    values = pc.utf8_trim_whitespace(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    for quote in ('"', "'"):
        quoted = pc.and_(
            pc.and_(pc.starts_with(values, quote), pc.ends_with(values, quote)),
            pc.greater_equal(pc.utf8_length(values), 2),
        )
        if pc.any(quoted).as_py():
            values = pc.if_else(quoted, pc.utf8_trim_whitespace(pc.utf8_slice_codeunits(values, 1, -1)), values)
    return values


def _value_checks(column: pa.Array, field: pa.Field):
    """Yield (mask of bad rows, message maker) pairs for one column, most basic check first."""
    if schema.is_ignored(field):
        return
    kind = field.type
    empty = _to_numpy(pc.equal(pc.utf8_length(column), 0))
    yield empty, lambda v, truncated: "empty value" + (" (truncated last line?)" if truncated else "")
    if field.name in _ID_PREFIX:
        letter = _ID_PREFIX[field.name]
        yield ~_to_numpy(_looks_like_id(column, letter)), lambda v, t: f"not an id ({letter} and digits): {_show(v)}"
    elif field.name == "gender":
        yield ~_to_numpy(pc.is_in(column, pa.array(_GENDERS))), lambda v, t: f"unknown gender {_show(v)}, expected F, M, E or U"
    if pa.types.is_decimal(kind):
        yield _not_matching(column, _DECIMAL), lambda v, t: f"not a decimal number: {_show(v)}"
        yield ~_converts_exactly(column, kind), lambda v, t: _inexact_decimal(v, kind)
    elif kind == pa.int8():
        yield _not_matching(column, _FLAG), lambda v, t: f"expected 0 or 1, found {_show(v)}"
    elif pa.types.is_integer(kind):
        yield _not_matching(column, _WHOLE_NUMBER), lambda v, t: f"not a whole number: {_show(v)}"


def _converts_exactly(column: pa.Array, kind: pa.DataType) -> np.ndarray:
    """Which values Arrow converts to ``kind`` without losing a digit; those that are not decimal
    numbers at all count as converting here (another check names them)."""
    exact = ~_not_matching(column, _PLAIN_DECIMAL) | _not_matching(column, _DECIMAL)
    others = np.flatnonzero(~exact)  # exponents, leading zeros, more decimals: rare, unless a whole file is written so
    try:
        pc.cast(column.take(pa.array(others)), kind)
    except pa.ArrowException:
        pass
    else:
        return np.ones(len(column), dtype=bool)
    for row in others:
        try:
            pc.cast(column[int(row) : int(row) + 1], kind)
        except pa.ArrowException:
            continue
        exact[row] = True
    return exact


def _inexact_decimal(value: str, kind: pa.DataType) -> str:
    number = Decimal(value)
    if number != number.quantize(Decimal(1).scaleb(-kind.scale), rounding=ROUND_DOWN):
        return f"more than {'two' if kind.scale == 2 else kind.scale} decimals: {_show(value)}"
    if abs(number) >= Decimal(10) ** (kind.precision - kind.scale):
        return f"more than {kind.precision - kind.scale} digits before the point: {_show(value)}"
    return f"not a decimal number that fits {kind} exactly (too long an exponent?): {_show(value)}"


def _looks_like_id(column: pa.Array | pa.ChunkedArray, letter: str) -> pa.Array:
    """The letter, then one or more ASCII digits (as ``stringbytes.all_ids`` on the fast path)."""
    return pc.fill_null(pc.match_substring_regex(column, f"^{letter}[0-9]+$"), False)


def _not_matching(column: pa.Array, pattern: str) -> np.ndarray:
    return ~_to_numpy(pc.match_substring_regex(column, pattern))


def _to_numpy(mask: pa.Array) -> np.ndarray:
    return mask.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _cast(values: pa.Array | pa.ChunkedArray, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
    return values if kind == pa.string() else pc.cast(values, kind)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[: _MAX_SHOWN_VALUE - 4] + "...'"
