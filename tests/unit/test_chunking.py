"""Chunk i holds data rows [i * C, (i + 1) * C), each chunk a CSV with the file's header."""

from __future__ import annotations

from itertools import pairwise
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patternflow.ingest import chunking
from patternflow.ingest.chunking import ChunkedFile, assemble, chunk_count
from tests.conftest import HEADER


def rows(n: int) -> list[str]:
    return [f"{i},'C{i}','3','F','28007','M1','28007','es_food',1.00,0" for i in range(n)]


def test_chunks_hold_consecutive_rows_with_the_header():
    data = (HEADER + "\n" + "\n".join(rows(25)) + "\n").encode()
    source = ChunkedFile(data, 10)
    assert (source.rows, source.chunks) == (25, 3)
    chunks = list(source)
    assert [c.rows for c in chunks] == [10, 10, 5]
    for chunk in chunks:
        lines = chunk.data.decode().splitlines()
        assert lines[0] == HEADER
        assert lines[1:] == rows(25)[chunk.index * 10 : chunk.index * 10 + chunk.rows]
        assert chunk.data.endswith(b"\n")


@pytest.mark.parametrize("ending", ["\n", "", "\n\n\n", "\r\n"])
def test_file_endings_do_not_add_rows(ending):
    data = (HEADER + "\n" + "\n".join(rows(20)) + ending).encode()
    source = ChunkedFile(data, 10)
    assert (source.rows, source.chunks) == (20, 2)
    assert source.chunk(1).data.decode().splitlines()[-1] == rows(20)[-1]


def test_bom_and_header_only():
    assert ChunkedFile(b"\xef\xbb\xbf" + HEADER.encode() + b"\n", 10).chunks == 0
    assert ChunkedFile(b"\xef\xbb\xbf" + (HEADER + "\n" + rows(1)[0]).encode(), 10).chunk(0).data.startswith(b"step,")


def test_out_of_range_chunk():
    with pytest.raises(IndexError, match="chunk 2 is out of range"):
        ChunkedFile((HEADER + "\n" + "\n".join(rows(20))).encode(), 10).chunk(2)


def test_chunk_count():
    assert [chunk_count(n, 10) for n in (0, 1, 10, 11, 594_643)] == [0, 1, 1, 2, 59_465]


@given(
    st.integers(0, 40),
    st.integers(1, 12),
    st.sampled_from(["", "\n", "\n\n", "\r\n", " \n\t"]),
    st.booleans(),
    st.sampled_from([1, 3, 7, 1 << 22]),
)
def test_any_cut_is_the_lines_in_order(n, size, ending, bom, window):
    """Against a plain split into lines, whatever the chunk size, the file's end, a BOM and the
    scan window (windows smaller than a line included)."""
    data = ("\ufeff" if bom else "") + HEADER + "\n" + "\n".join(rows(n)) + (ending if n else "\n")
    with patch.object(chunking, "_SCAN_WINDOW_BYTES", window):
        source = ChunkedFile(data.encode(), size)
    assert (source.rows, source.chunks, source.header) == (n, chunk_count(n, size), (HEADER + "\n").encode())
    got = [line for chunk in source for line in chunk.data.decode().splitlines()[1:]]
    assert got == rows(n)
    assert all(chunk.data.endswith(b"\n") for chunk in source)
    raw = data.encode()
    offsets = source.offsets()
    assert [assemble(source.header, raw[a:b]) for a, b in pairwise(offsets)] == [c.data for c in source]
