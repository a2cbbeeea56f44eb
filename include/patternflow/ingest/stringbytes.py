"""Checks and conversions over the raw bytes of Arrow string columns.

A chunk's string columns are 10,000 short values; Arrow's compute kernels spend more time
dispatching and allocating per call than looking at those few hundred kilobytes. Reading the
offsets and data buffers as numpy arrays answers the questions the fast path asks of a clean
chunk (are all values ids? all one letter?) in one vectorised pass each.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

_ZERO = np.uint8(ord("0"))


def _pieces(column: pa.Array | pa.ChunkedArray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(offsets, data) of each chunk of a string column: value i is data[offsets[i]:offsets[i + 1]]."""
    for array in column.chunks if isinstance(column, pa.ChunkedArray) else (column,):
        if array.type != pa.string():
            raise TypeError(f"expected a string column, got {array.type}")
        _, offsets, data = array.buffers()
        offsets = np.frombuffer(offsets, dtype=np.int32)[array.offset : array.offset + len(array) + 1]
        yield offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, dtype=np.uint8)


def all_ids(column: pa.Array | pa.ChunkedArray, letter: str) -> bool:
    """Whether every value is ``letter`` followed by one or more ASCII digits (no nulls).

    The values' bytes hold exactly one non-digit per value exactly when each value's first byte
    is its only non-digit; that, with the first bytes all equal to the letter, is the shape.
    """
    if column.null_count:
        return False
    code = ord(letter)
    for offsets, data in _pieces(column):
        if len(offsets) < 2:
            continue
        if np.diff(offsets).min() < 2 or (data[offsets[:-1]] != code).any():
            return False
        # digits are the bytes 48..57: less 48 (wrapping around in uint8), exactly those are <= 9
        if np.count_nonzero((data[offsets[0] : offsets[-1]] - _ZERO) > 9) != len(offsets) - 1:
            return False
    return True


def single_bytes(column: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """The byte of each value when every value is exactly one byte long (no nulls), else None."""
    if column.null_count:
        return None
    parts = []
    for offsets, data in _pieces(column):
        if (np.diff(offsets) != 1).any():
            return None
        parts.append(data[offsets[0] : offsets[-1]])
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint8)


def _digit_mask(data: np.ndarray) -> np.ndarray:
    return (data - _ZERO) <= 9  # digits are the bytes 48..57: less 48, wrapping around in uint8


def all_whole_numbers(column: pa.Array | pa.ChunkedArray, max_digits: int) -> bool:
    """Whether every value is 1 to ``max_digits`` ASCII digits (no sign, no nulls): the shape a
    regular expression ``^[0-9]{1,max_digits}$`` accepts."""
    if column.null_count:
        return False
    for offsets, data in _pieces(column):
        if len(offsets) < 2:
            continue
        lengths = np.diff(offsets)
        if lengths.min() < 1 or lengths.max() > max_digits or not _digit_mask(data[offsets[0] : offsets[-1]]).all():
            return False
    return True


def all_flags(column: pa.Array | pa.ChunkedArray) -> bool:
    """Whether every value is exactly ``0`` or ``1`` (no nulls)."""
    letters = single_bytes(column)
    return letters is not None and bool(((letters == ord("0")) | (letters == ord("1"))).all())


_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_FINAL = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def hashes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each value's bytes (uint64; no nulls), equal for equal values.

    Eight bytes at a time, so that a batch of short names (BankSim's are 10 to 13 bytes) is two
    vectorised steps; a value's length is part of its hash, the bytes past its end are not.
    """
    if column.null_count:
        raise ValueError("cannot hash null values")
    out = []
    for offsets, data in _pieces(column):
        starts = offsets[:-1].astype(np.int64)
        lengths = np.diff(offsets).astype(np.int64)
        padded = np.zeros(len(data) + 8, dtype=np.uint8)
        padded[: len(data)] = data
        words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))  # the 8 bytes from each byte on
        hashed = lengths.astype(np.uint64) * _MULTIPLIER
        for at in range(0, int(lengths.max(initial=0)), 8):
            live = np.flatnonzero(lengths > at)
            word = words[starts[live] + at]
            left = (lengths[live] - at).astype(np.uint64)
            short = left < 8
            word[short] &= (np.uint64(1) << (np.uint64(8) * left[short])) - np.uint64(1)
            mixed = (hashed[live] ^ word) * _MULTIPLIER
            hashed[live] = mixed ^ (mixed >> np.uint64(29))
        for multiplier in _FINAL:  # MurmurHash3's finaliser: every bit of the input moves every bit
            hashed = (hashed ^ (hashed >> np.uint64(33))) * multiplier
        out.append(hashed ^ (hashed >> np.uint64(33)))
    return np.concatenate(out) if out else np.empty(0, dtype=np.uint64)
