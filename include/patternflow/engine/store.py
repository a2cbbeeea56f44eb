"""A minimal object store interface, so that state and outputs work on a folder and on S3 alike.

Keys are '/'-separated paths relative to the store's root. ``put`` replaces an object whole:
a reader sees the old bytes or the new ones, never a mix (S3 PUT semantics; on a folder, a
temporary file renamed into place). ``replace`` writes only over the version of an object the
writer read (S3 conditional writes; on a folder, under a lock), so that of two writers racing
from the same version exactly one wins.

A large object is never held whole: ``read_range`` reads a byte range of it and ``put_stream``
writes it from a sequence of pieces (S3 multipart upload; on a folder, a temporary file), so
reference data of any size passes through in bounded memory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    written_at: float
    """When the object was written, seconds since the epoch."""
    tag: str = ""
    """The store's tag for this version of the object (S3's ETag), for ``replace``."""


class WriteConflict(Exception):
    """``replace`` found the object changed (or created) since the version the writer read."""


class ObjectStore(Protocol):
    def get(self, key: str) -> bytes:
        """The object's bytes; ``KeyError`` if there is none."""

    def fetch(self, key: str) -> StoredObject:
        """The object's bytes and write time; ``KeyError`` if there is none."""

    def put(self, key: str, data: bytes) -> None: ...

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> None:
        """Write ``key`` from its bytes in pieces, never all held at once; replaced whole, as
        ``put``, once the last piece is written (an error while reading them writes nothing)."""

    def size(self, key: str) -> int:
        """The object's size in bytes; ``KeyError`` if there is none."""

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (fewer past its end); ``KeyError`` if there is none."""

    def replace(self, key: str, data: bytes, expected: str | None) -> str:
        """Write ``key`` only if it still is the version tagged ``expected`` (None: only if there is
        no such object); returns the new version's tag, or raises ``WriteConflict``."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Keys that start with ``prefix``, sorted."""

    def delete(self, keys: list[str]) -> None: ...

    def digests(self, prefix: str) -> dict[str, str]:
        """MD5 (hex) of the objects under ``prefix`` whose digest is known without reading them."""


def range_reader(store: ObjectStore, key: str) -> Callable[[int, int], bytes]:
    """``read_range(start, end)`` over one object, as the byte-range readers of ``ingest`` take it."""

    def read_range(start: int, end: int) -> bytes:
        return store.read_range(key, start, end)

    return read_range


class LocalStore:
    """An ``ObjectStore`` on a local folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} escapes the store's folder {self.root}")
        return path

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def fetch(self, key: str) -> StoredObject:
        path = self._path(key)
        try:
            data = path.read_bytes()
            return StoredObject(data, path.stat().st_mtime, _tag(data))
        except FileNotFoundError:
            raise KeyError(key) from None

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, [data])

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A new file of its own beside the target, with the mode any new file gets (mkstemp's
        # would be private, 0600), renamed over the target once complete.
        temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in pieces:
                    out.write(piece)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise KeyError(key) from None

    def read_range(self, key: str, start: int, end: int) -> bytes:
        try:
            with self._path(key).open("rb") as file:
                file.seek(start)
                return file.read(max(0, end - start))
        except FileNotFoundError:
            raise KeyError(key) from None

    def replace(self, key: str, data: bytes, expected: str | None) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / f".{path.name}.lock", "wb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                found: str | None = _tag(path.read_bytes())
            except FileNotFoundError:
                found = None
            if found != expected:
                raise WriteConflict(f"{key} changed since it was read (expected {expected}, found {found})")
            self.put(key, data)
        return _tag(data)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file() and not p.name.startswith("."))
        return sorted(k for k in keys if k.startswith(prefix))

    def digests(self, prefix: str) -> dict[str, str]:
        return {key: hashlib.md5(self.get(key)).hexdigest() for key in self.list(prefix)}

    def delete(self, keys: list[str]) -> None:
        root = self.root.resolve()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            (path.parent / f".{path.name}.lock").unlink(missing_ok=True)  # left by a conditional write
            for parent in path.parents:  # drop folders the deletion left empty
                if parent == root or not parent.is_relative_to(root) or any(parent.iterdir()):
                    break
                parent.rmdir()


def _tag(data: bytes) -> str:
    """A folder's version tag: the MD5 of the bytes, as S3's ETag of a single-part upload."""
    return hashlib.md5(data).hexdigest()
