"""The stream's source files, on a local disk or on S3 (``s3://bucket/key``).

The producer reads a source whole once, at stream start, to find where each chunk begins;
afterwards every tick reads only its chunk's byte range, so a tick costs the same at any
position in the file and at any file size.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def read(self) -> bytes: ...

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

    def read(self) -> bytes:
        self.size()
        return self.path.read_bytes()

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

    def read(self) -> bytes:
        try:
            return self.store.get(self.key)
        except KeyError:
            raise SourceError(f"{self.location}: no such object") from None

    def read_range(self, start: int, end: int) -> bytes:
        return self.store.read_range(self.key, start, end)


SourceOpener = Callable[[str], SourceFile]


def source_opener(s3_client: Callable[[], Any]) -> SourceOpener:
    """Open a location as a source; ``s3_client`` is called only for ``s3://`` locations."""

    def open_source(location: str) -> SourceFile:
        if location.startswith("s3://"):
            return S3Source(location, s3_client())
        return LocalSource(location)

    return open_source
