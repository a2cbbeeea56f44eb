"""Cut a transactions file into chunks: chunk i holds data rows [i * size, (i + 1) * size).

Each chunk is a CSV of its own (the file's header line, then its rows), so that it parses alone.
The cut works on bytes with numpy, so the full BankSim file is cut in milliseconds and every
chunk keeps the source's exact bytes.

A source is read through ``read_range(start, end)`` and its size, window by window: finding the
chunks keeps only their offsets, and a chunk is read by its byte range when it is wanted, so no
file is ever held whole whatever its size. ``line_batches`` cuts a file the same way into
batches of whole lines of at most a given size, for a file that is only parsed to be checked or
aggregated (CustomerImportance).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_BOM = b"\xef\xbb\xbf"
_TRAILING_WHITESPACE = b"\r\n\t "
_NEWLINE = ord("\n")
_SCAN_WINDOW_BYTES = 1 << 22
_TAIL_BYTES = 1 << 12
_CR = ord("\r")

ReadRange = Callable[[int, int], bytes]
"""Bytes [start, end) of a source (fewer only past its end)."""


@dataclass(frozen=True)
class Chunk:
    index: int
    data: bytes
    rows: int


def chunk_count(rows: int, size: int) -> int:
    return -(-rows // size)


class ChunkedFile:
    """The data lines of a CSV file, addressable by chunk index.

    Only the byte offsets of the chunk boundaries are kept, found by a windowed numpy scan for
    line ends; the file's bytes are never held whole (a ten-times BankSim file is half a
    gigabyte). ``ChunkedFile(data, size)`` cuts bytes in memory; ``ChunkedFile.scan`` cuts a
    source read by byte range, with the same result for the same bytes.
    """

    def __init__(self, data: bytes, size: int) -> None:
        self._init(lambda start, end: data[start:end], len(data), size)

    @classmethod
    def scan(cls, read_range: ReadRange, total: int, size: int) -> ChunkedFile:
        """The chunks of a source of ``total`` bytes, read through ``read_range`` one window at a
        time (``_SCAN_WINDOW_BYTES``); a chunk is read by its range when ``chunk`` is called."""
        chunked = cls.__new__(cls)
        chunked._init(read_range, total, size)
        return chunked

    def _init(self, read_range: ReadRange, total: int, size: int) -> None:
        if size < 1:
            raise ValueError(f"chunk size must be at least 1, got {size}")
        start = _bom_length(read_range, total)
        end = _stripped_end(read_range, start, total)
        newlines, boundaries = _line_ends(read_range, start, end, size)
        self._read = read_range
        self._skipped = start
        self._end = end
        header_end = int(boundaries[0]) + 1 if newlines else end
        self._header = read_range(start, header_end).rstrip(b"\n") + b"\n"
        # _bounds[i]: where chunk i's rows start; the last one is followed by the end of the data
        self._bounds = [int(b) + 1 for b in boundaries]
        self.size = size
        self.rows = newlines
        self.chunks = chunk_count(self.rows, size)

    @property
    def header(self) -> bytes:
        return self._header

    def _range(self, index: int) -> tuple[int, int]:
        return self._bounds[index], self._bounds[index + 1] if index + 1 < len(self._bounds) else self._end

    def chunk(self, index: int) -> Chunk:
        if not 0 <= index < self.chunks:
            raise IndexError(f"chunk {index} is out of range: the file has {self.chunks} chunks of {self.size} rows")
        first, end = self._range(index)
        rows = min((index + 1) * self.size, self.rows) - index * self.size
        return Chunk(index, assemble(self._header, self._read(first, end)), rows)

    def offsets(self) -> list[int]:
        """Where each chunk's rows start in the original bytes, then where the last one ends.

        With these and the header, a chunk can be cut from a byte range of the file without
        reading the rest of it (``assemble``).
        """
        return [*self._bounds[: self.chunks], self._end]

    def __iter__(self) -> Iterator[Chunk]:
        return (self.chunk(i) for i in range(self.chunks))


def _bom_length(read_range: ReadRange, total: int) -> int:
    """The length of the source's UTF-8 byte-order mark, if it has one (read within its size: an
    object store refuses a range that starts past an object's end)."""
    return len(_BOM) if read_range(0, min(len(_BOM), total)) == _BOM else 0


def _stripped_end(read_range: ReadRange, start: int, total: int) -> int:
    """Where the source ends without its trailing whitespace (never before ``start``), read
    backwards from a small tail, each window twice the last up to ``_SCAN_WINDOW_BYTES``: blank
    lines at the end are not rows, and are seldom more than a few."""
    end, step = total, min(_TAIL_BYTES, _SCAN_WINDOW_BYTES)
    while end > start:
        first = max(start, end - step)
        kept = len(read_range(first, end).rstrip(_TRAILING_WHITESPACE))
        if kept:
            return first + kept
        end, step = first, min(2 * step, _SCAN_WINDOW_BYTES)
    return end


def _line_ends(read_range: ReadRange, start: int, end: int, size: int) -> tuple[int, np.ndarray]:
    """The number of line ends in bytes [start, end), and the offsets of line ends number 0,
    size, 2 * size, ... (line end 0 closes the header; line end k * size closes the last row
    before chunk k). Scanned in windows, so only one window is held at a time."""
    count, picked = 0, []
    for first in range(start, end, _SCAN_WINDOW_BYTES):
        window = np.frombuffer(read_range(first, min(first + _SCAN_WINDOW_BYTES, end)), dtype=np.uint8)
        found = np.flatnonzero(window == _NEWLINE)
        wanted = (-count) % size  # the first index in this window that is a multiple of size
        picked.append(found[wanted::size] + first)
        count += len(found)
    return count, np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)


def file_reader(path: str | Path) -> ReadRange:
    """``read_range`` over a local file: each call opens it, reads its range and closes it, so
    nothing stays open between a stream's chunks."""

    def read_range(start: int, end: int) -> bytes:
        with open(path, "rb") as file:
            file.seek(start)
            return file.read(max(0, end - start))

    return read_range


@dataclass(frozen=True)
class LineBatch:
    """Consecutive whole lines of a file: its bytes [start, end), the first of them line ``line``."""

    start: int
    end: int
    line: int
    data: bytes
    last: bool
    """The file's last batch: it runs to the file's end, trailing whitespace included."""


def line_batches(read_range: ReadRange, total: int, max_bytes: int) -> Iterator[LineBatch]:
    """The file cut into batches of whole lines, each of at most ``max_bytes`` where the lines
    allow (a batch takes on lines up to the next place it may end), read one batch at a time.

    The first batch starts after a byte-order mark, if any, and holds the header line. A batch
    other than the last ends after a line end whose line ends in something other than whitespace,
    before the file's trailing whitespace: parsed alone, such a batch reads exactly as its lines
    do within the whole file (nothing of it is stripped as the end of a file). The last batch runs
    to the file's end, trailing whitespace included.
    """
    if max_bytes < 1:
        raise ValueError(f"a batch must be allowed at least 1 byte, got {max_bytes}")
    start = _bom_length(read_range, total)
    content_end = _stripped_end(read_range, start, total)
    line = 1
    while True:
        data, end = _next_batch(read_range, start, content_end, max_bytes)
        if end >= content_end:
            yield LineBatch(start, total, line, data + read_range(start + len(data), total), last=True)
            return
        yield LineBatch(start, end, line, data, last=False)
        line += data.count(b"\n")
        start = end


def _next_batch(read_range: ReadRange, start: int, content_end: int, max_bytes: int) -> tuple[bytes, int]:
    """The bytes of the batch that starts at ``start`` and where it ends: after the last line end
    it may end at within ``max_bytes``, else after the first one beyond; ``content_end`` when
    there is none before the file's trailing whitespace."""
    data = read_range(start, min(start + max_bytes, content_end))
    if start + len(data) >= content_end:
        return data, content_end
    cut = _last_cut(data)
    while cut < 0:
        searched = len(data)
        data += read_range(start + searched, min(start + searched + max_bytes, content_end))
        cut = _first_cut(data, searched)
        if cut < 0 and start + len(data) >= content_end:
            return data, content_end
    return data[:cut], start + cut


def _may_end_after(data: bytes, newline: int) -> bool:
    """Whether a batch may end after the line end at ``newline``: its line ends (before a CR LF's
    CR) in something other than whitespace."""
    end = newline - 1 if newline >= 1 and data[newline - 1] == _CR else newline
    return end >= 1 and data[end - 1] not in _TRAILING_WHITESPACE


def _last_cut(data: bytes) -> int:
    """Just after the last line end of ``data`` a batch may end at, or -1."""
    at = data.rfind(b"\n")
    while at >= 0 and not _may_end_after(data, at):
        at = data.rfind(b"\n", 0, at)
    return at + 1 if at >= 0 else -1


def _first_cut(data: bytes, begin: int) -> int:
    """Just after the first line end at or after ``begin`` a batch may end at, or -1."""
    at = data.find(b"\n", begin)
    while at >= 0 and not _may_end_after(data, at):
        at = data.find(b"\n", at + 1)
    return at + 1 if at >= 0 else -1


def assemble(header: bytes, rows: bytes) -> bytes:
    """A chunk's bytes from the header and its rows' byte range: what ``ChunkedFile.chunk`` returns."""
    return header + rows + (b"" if rows.endswith(b"\n") else b"\n")
