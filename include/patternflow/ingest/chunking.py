"""Cut a transactions file into chunks: chunk i holds data rows [i * size, (i + 1) * size).

Each chunk is a CSV of its own (the file's header line, then its rows), so that it parses alone.
The cut works on bytes with numpy, so the full BankSim file is cut in milliseconds and every
chunk keeps the source's exact bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

_BOM = b"\xef\xbb\xbf"
_TRAILING_WHITESPACE = b"\r\n\t "
_NEWLINE = ord("\n")
_SCAN_WINDOW_BYTES = 1 << 22


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
    line ends; the file's bytes are never copied (a ten-times BankSim file is half a gigabyte).
    """

    def __init__(self, data: bytes, size: int) -> None:
        if size < 1:
            raise ValueError(f"chunk size must be at least 1, got {size}")
        start = len(_BOM) if data.startswith(_BOM) else 0
        end = len(data)
        while end > start and data[end - 1] in _TRAILING_WHITESPACE:
            end -= 1
        newlines, boundaries = _line_ends(data, start, end, size)
        self._data = data
        self._skipped = start
        self._end = end
        header_end = int(boundaries[0]) + 1 if newlines else end
        self._header = data[start:header_end].rstrip(b"\n") + b"\n"
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
        return Chunk(index, assemble(self._header, self._data[first:end]), rows)

    def offsets(self) -> list[int]:
        """Where each chunk's rows start in the original bytes, then where the last one ends.

        With these and the header, a chunk can be cut from a byte range of the file without
        reading the rest of it (``assemble``).
        """
        return [*self._bounds[: self.chunks], self._end]

    def __iter__(self) -> Iterator[Chunk]:
        return (self.chunk(i) for i in range(self.chunks))


def _line_ends(data: bytes, start: int, end: int, size: int) -> tuple[int, np.ndarray]:
    """The number of line ends in ``data[start:end]``, and the offsets of line ends number 0,
    size, 2 * size, ... (line end 0 closes the header; line end k * size closes the last row
    before chunk k). Scanned in windows, so temporary arrays stay small."""
    count, picked = 0, []
    for first in range(start, end, _SCAN_WINDOW_BYTES):
        window = np.frombuffer(data, dtype=np.uint8, count=min(_SCAN_WINDOW_BYTES, end - first), offset=first)
        found = np.flatnonzero(window == _NEWLINE)
        wanted = (-count) % size  # the first index in this window that is a multiple of size
        picked.append(found[wanted::size] + first)
        count += len(found)
    return count, np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)


def assemble(header: bytes, rows: bytes) -> bytes:
    """A chunk's bytes from the header and its rows' byte range: what ``ChunkedFile.chunk`` returns."""
    return header + rows + (b"" if rows.endswith(b"\n") else b"\n")
