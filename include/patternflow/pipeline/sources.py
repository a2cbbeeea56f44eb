"""The stream's source files, on a local disk or on S3 (``s3://bucket/key``).

A source is only ever read by byte range: at stream start the producer scans it a window at a
time to find where each chunk begins (and copies CustomerImportance piece by piece); afterwards
every tick reads only its chunk's byte range, so a tick costs the same at any position in the
file and memory stays bounded at any file size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from patternflow.errors import PatternflowError
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import split_s3_uri


class SourceError(PatternflowError):
    """A source file is missing or unreadable."""


class SourceFile(Protocol):
    location: str

    def size(self) -> int: ...

    def read_range(self, start: int, end: int) -> bytes: ...


class LocalSource:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(path)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            raise SourceError(f"{self.location}: no such file (working directory {Path.cwd()})") from None

    def read_range(self, start: int, end: int) -> bytes:
        with self.path.open("rb") as file:
            file.seek(start)
            return file.read(max(0, end - start))


class S3Source:
    def __init__(self, uri: str, client: Any) -> None:
        bucket, self.key = split_s3_uri(uri)
        self.store = S3Store(client, bucket)
        self.location = uri

    def size(self) -> int:
        try:
            return self.store.size(self.key)
        except KeyError:
            raise SourceError(f"{self.location}: no such object") from None

    def read_range(self, start: int, end: int) -> bytes:
        return self.store.read_range(self.key, start, end)


PIECE_BYTES = 16 << 20
"""A source is copied in pieces of this size (``pieces``)."""


def pieces(source: SourceFile, size: int, piece_bytes: int | None = None) -> Iterator[bytes]:
    """The first ``size`` bytes of a source, one byte range (of ``piece_bytes``, by default
    ``PIECE_BYTES``) at a time: a copy never holds it whole."""
    step = piece_bytes or PIECE_BYTES
    for start in range(0, size, step):
        yield source.read_range(start, min(start + step, size))


SourceOpener = Callable[[str], SourceFile]


def source_opener(s3_client: Callable[[], Any]) -> SourceOpener:
    """Open a location as a source; ``s3_client`` is called only for ``s3://`` locations."""

    def open_source(location: str) -> SourceFile:
        if location.startswith("s3://"):
            return S3Source(location, s3_client())
        return LocalSource(location)

    return open_source
