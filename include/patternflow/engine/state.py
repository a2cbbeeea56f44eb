"""Versioned, atomically committed engine state in Parquet, on any ``ObjectStore``.

Layout under the store's prefix::

    versions/0000000007/customers.parquet  customer names, a customer's dense id being its row
    versions/0000000007/merchants.parquet  merchant names, likewise
    versions/0000000007/pairs.parquet      the aggregates, one row per (merchant, customer) id pair
    versions/0000000007/emitted.parquet    every detection key ever emitted
    versions/0000000007/pending.parquet    detections waiting for their file
    versions/0000000007/manifest.json      counters, settings and a checksum of each object
    CURRENT                                a copy of the newest manifest: the commit point

A commit writes a whole new version beside the old ones and only then replaces ``CURRENT``, one
small write. A crash at any point leaves the last committed version current. Loading checks
every object against the manifest's SHA-256; a damaged version is skipped for the newest
intact one before it, and the fall-back is reported. The newest few versions are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from patternflow.engine.clock import iso_ist, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import EngineState
from patternflow.engine.store import ObjectStore, WriteConflict
from patternflow.errors import PatternflowError

log = logging.getLogger(__name__)

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
_TABLES = ("customers", "merchants", "pairs", "emitted", "pending")
_COUNTERS = ("chunks_folded", "rows_folded", "files_written", "detections", "detections_by_pattern", "finished")


class StateError(PatternflowError):
    """No usable state: every committed version is damaged, or the settings differ."""


class StateConflict(PatternflowError):
    """Another writer made a state current since this one read it; this commit did not happen."""


class _ChecksumMismatch(Exception):
    pass


_DAMAGE = (KeyError, ValueError, TypeError, OSError, pa.ArrowException, _ChecksumMismatch)
"""What reading a damaged or missing version object raises."""


@dataclass(frozen=True)
class LoadedState:
    state: EngineState
    config: DetectionConfig
    version: int
    skipped_versions: tuple[int, ...] = ()
    """Newer versions that were damaged and passed over (empty in the normal case)."""


class StateStore:
    def __init__(self, store: ObjectStore, prefix: str = "", keep: int = 3) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.store = store
        self.prefix = prefix
        self.keep = max(2, keep)
        self._seen: tuple[str | None, int | None] | None = None
        """(tag, version) of ``CURRENT`` as this store last read or wrote it (None: not yet; a
        tag of None: there was no CURRENT). A commit replaces exactly that ``CURRENT``."""

    @property
    def current_key(self) -> str:
        return f"{self.prefix}CURRENT"

    def _version_key(self, version: int, name: str) -> str:
        return f"{self.prefix}versions/{version:010d}/{name}"

    def versions(self) -> list[int]:
        return sorted(self._version_keys())

    def _version_keys(self) -> dict[int, list[str]]:
        """The keys of every version present, committed or not, by version (one listing)."""
        found: dict[int, list[str]] = {}
        for key in self.store.list(f"{self.prefix}versions/"):
            part = key[len(self.prefix) + len("versions/") :].split("/", 1)[0]
            if part.isdigit():
                found.setdefault(int(part), []).append(key)
        return found

    def _read_current(self) -> tuple[int | None, dict | None]:
        """The version ``CURRENT`` names and its manifest (None, None when absent; None and the
        parsed value when damaged), remembering its tag for the next commit."""
        try:
            current = self.store.fetch(self.current_key)
        except KeyError:
            self._seen = (None, None)
            return None, None
        try:
            manifest = json.loads(current.data)
        except ValueError as exc:
            log.error("%s is damaged (%s); using the newest intact version under %sversions/", self.current_key, exc, self.prefix)
            manifest = None
        version = manifest.get("version") if isinstance(manifest, dict) else None
        if manifest is not None and not isinstance(version, int):
            log.error("%s is damaged (no version number); using the newest intact version under %sversions/", self.current_key, self.prefix)
            version = None
        self._seen = (current.tag, version)
        return version, manifest

    def load(self) -> LoadedState | None:
        """The newest intact committed state, or None for a stream that has not started."""
        version, manifest = self._read_current()
        if self._seen == (None, None):
            return None
        if version is not None:  # the normal case: CURRENT and its version are intact, no listing needed
            try:
                return LoadedState(self._read(manifest), DetectionConfig.from_json(manifest["config"]), version)
            except _DAMAGE as exc:
                log.error("state version %s is damaged (%s); trying the version before it", version, exc)
                skipped, newest = [version], version - 1
        else:
            skipped, newest = [], None
        for candidate in sorted((v for v in self.versions() if newest is None or v <= newest), reverse=True):
            try:
                manifest = json.loads(self.store.get(self._version_key(candidate, "manifest.json")))
                loaded = self._read(manifest)
            except _DAMAGE as exc:
                log.error("state version %s is damaged (%s); trying the version before it", candidate, exc)
                skipped.append(candidate)
                continue
            if skipped:
                log.error("state recovered from version %s after skipping damaged versions %s", candidate, skipped)
            return LoadedState(loaded, DetectionConfig.from_json(manifest["config"]), candidate, tuple(skipped))
        raise StateError(f"no intact state version under {self.prefix or 'the state root'}: damaged versions {skipped}")

    def read_pending(self) -> pa.Table | None:
        """The current version's detections waiting for their file, alone (for the progress page),
        or None when there is no intact current version."""
        version, manifest = self._read_current()
        if version is None:
            return None
        entry = manifest["objects"]["pending"]
        try:
            return _table(entry, self.store.get(entry["key"]))
        except (KeyError, _ChecksumMismatch):
            return None

    def _read(self, manifest: dict) -> EngineState:
        entries = [manifest["objects"][name] for name in _TABLES]
        tables = {}
        for name, entry, data in zip(_TABLES, entries, _in_parallel(self.store.get, [e["key"] for e in entries]), strict=True):
            tables[name] = _table(entry, data)
        return EngineState(**tables, **{k: manifest[k] for k in _COUNTERS})

    def commit(self, state: EngineState, config: DetectionConfig) -> int:
        """Write ``state`` as a new version and make it current; returns its number.

        The number follows every version present, committed or not, so that no number is ever
        reused; the one listing that finds them also finds what to prune. ``CURRENT`` is replaced
        only if it is still the one this store loaded (or last committed): when two detection runs
        race from the same state (a task outliving its scheduler, say), the second to commit gets
        ``StateConflict`` and none of its work becomes current.
        """
        if self._seen is None:
            self._read_current()
        tag, seen_version = self._seen
        present = self._version_keys()
        version = max([*present, seen_version or 0, 0]) + 1
        payloads = {name: _parquet_bytes(getattr(state, name)) for name in _TABLES}
        objects = {
            name: {"key": self._version_key(version, f"{name}.parquet"), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in payloads.items()
        }
        _in_parallel(lambda name: self.store.put(objects[name]["key"], payloads[name]), list(_TABLES))
        manifest = {
            "version": version,
            "committed_at": iso_ist(now_ist()),
            "config": config.to_json(),
            "objects": objects,
            **{k: getattr(state, k) for k in _COUNTERS},
        }
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self.store.put(self._version_key(version, "manifest.json"), text)
        try:
            self._seen = (self.store.replace(self.current_key, text, tag), version)
        except WriteConflict:
            raise StateConflict(
                f"{self.current_key} changed since this run read it: another detection run committed meanwhile. "
                f"Nothing of this run became current (its version {version} is left unused); the next run resumes "
                "from the other's state"
            ) from None
        old = sorted(present)[: max(0, len(present) + 1 - self.keep)]
        if old:
            self.store.delete([key for v in old for key in present[v]])
        return version


def _in_parallel(function: Callable[[_Item], _Result], items: list[_Item]) -> list[_Result]:
    """``[function(item) for item in items]`` on threads: a version's objects are read and
    written as one round trip to S3 instead of one each."""
    with ThreadPoolExecutor(max_workers=len(items) or 1) as pool:
        return list(pool.map(function, items))


def _table(entry: dict, data: bytes) -> pa.Table:
    """A state object's table, its bytes checked against the manifest's SHA-256 (``entry``)."""
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise _ChecksumMismatch(f"{entry['key']}: checksum mismatch")
    return pq.ParquetFile(pa.BufferReader(data)).read()  # read_table would import pandas (columns.py)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()
