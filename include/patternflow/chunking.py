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


@dataclass(frozen=True)
class Chunk:
    index: int
    data: bytes
    rows: int


def chunk_count(rows: int, size: int) -> int:
    return -(-rows // size)


class ChunkedFile:
    """The data lines of a CSV file, addressable by chunk index."""

    def __init__(self, data: bytes, size: int) -> None:
        if size < 1:
            raise ValueError(f"chunk size must be at least 1, got {size}")
        self._skipped = len(_BOM) if data.startswith(_BOM) else 0
        data = data[self._skipped :]
        self._trimmed = len(data.rstrip(b"\r\n\t "))
        data = data[: self._trimmed] + b"\n"
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
        self._data = data
        self._header = data[: ends[0] + 1]
        self._starts = ends[:-1] + 1  # first byte of each data line
        self._ends = ends + 1  # one past the newline of each line (header first)
        self.size = size
        self.rows = len(ends) - 1 if data.strip() else 0
        self.chunks = chunk_count(self.rows, size)

    @property
    def header(self) -> bytes:
        return self._header

    def chunk(self, index: int) -> Chunk:
        if not 0 <= index < self.chunks:
            raise IndexError(f"chunk {index} is out of range: the file has {self.chunks} chunks of {self.size} rows")
        first, last = index * self.size, min((index + 1) * self.size, self.rows)
        body = self._data[self._starts[first] : self._ends[last]]
        return Chunk(index, self._header + body, last - first)

    def offsets(self) -> list[int]:
        """Where each chunk's rows start in the original bytes, then where the last one ends.

        With these and the header, a chunk can be cut from a byte range of the file without
        reading the rest of it (``assemble``).
        """
        starts = [int(self._starts[i * self.size]) + self._skipped for i in range(self.chunks)]
        return [*starts, self._trimmed + self._skipped]

    def __iter__(self) -> Iterator[Chunk]:
        return (self.chunk(i) for i in range(self.chunks))


def assemble(header: bytes, rows: bytes) -> bytes:
    """A chunk's bytes from the header and its rows' byte range: what ``ChunkedFile.chunk`` returns."""
    return header + rows + (b"" if rows.endswith(b"\n") else b"\n")
