"""Versioned, atomically committed engine state in Parquet, on any ``ObjectStore``: changelog commits.

Layout under the store's prefix::

    versions/0000000007/customers.parquet  customer names, a customer's dense id being its row
    versions/0000000007/merchants.parquet  merchant names, likewise
    versions/0000000007/pairs.parquet      the aggregates, one row per (merchant, customer) id pair
    versions/0000000007/emitted.parquet    every detection key emitted
    versions/0000000007/pending.parquet    detections waiting for their file
    versions/0000000007/claimed            empty: the number taken, by a create-only write
    versions/0000000007/manifest.json      counters, settings, a checksum of each of the version's
                                           objects, its chain (the version numbers to load), and
                                           the chunks folded by its chain's snapshot and by those
                                           of the versions it keeps
    CURRENT                                a copy of the newest manifest: the commit point

A version is a **snapshot** (the whole state) or a **delta** on the committed version before it:
the rows that version appended to customers, merchants, pairs and emitted (tables that only grow
at their end), the pairs whose values changed (``pair_updates``: each one's row and the columns
that changed), and the pending rows whole (fewer than a file's worth); a table with nothing
appended or changed has no object. The engine records these changes as it folds (it marks each
pair a fold changes, ``DetectionEngine.changes``), so a commit never compares two copies of the
whole state; the changes name the id of the committed version they start from (each manifest has
one), and are written as a delta only on that version.

Loading a version is its chain: the last snapshot, then each delta after it in order. A manifest
names only its own objects, with the numbers of the versions its chain goes through and the
chain's total bytes, so that it stays the same small size however long the chain grows; a load
reads the chain's manifests, then all its objects. A commit writes a snapshot every
``snapshot_every`` versions of a chain, when the chain's deltas pass ``snapshot_bytes`` or twice
the snapshot's bytes, and whenever there are no changes recorded on the current version;
otherwise a delta, so that a commit costs what the run changed, not the history.

A commit writes its objects and manifest beside the old versions and only then replaces
``CURRENT``, one small write: a crash at any point leaves the last committed version current.
Loading checks every object against the manifest's SHA-256; a damaged version is skipped for the
newest intact one before it, and the fall-back is reported. After a commit, every version folder
that neither the new version's chain nor the chains of the ``keep - 1`` committed versions before
it need is removed; nothing a committed version needs is removed before the pointer has moved
past it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np
import pyarrow as pa

from patternflow.engine.clock import iso_ist, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import EngineState, StateChanges
from patternflow.engine.parquet import parquet_bytes, parquet_table
from patternflow.engine.store import ObjectStore, WriteConflict
from patternflow.errors import PatternflowError
from patternflow.ingest import columns

log = logging.getLogger(__name__)

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
_TABLES = ("customers", "merchants", "pairs", "emitted", "pending")
_GROWING = ("customers", "merchants", "emitted")
"""Tables that only ever grow at their end: a delta holds the rows appended."""
_ROW = "pair"
"""The column of a delta's ``pair_updates`` that names the row each update replaces."""
_DELTA_ENCODED = {"pair_updates": (_ROW, "cents"), "pairs": ("customer", "cents", "weight_rank")}
"""Columns whose values are written as bit-packed differences (``parquet_bytes``): the row numbers
of updated pairs (sorted) and the wide-ranging ones."""
_COUNTERS = ("chunks_folded", "rows_folded", "files_written", "detections", "detections_by_pattern", "finished")
SNAPSHOT_EVERY = 200
"""Default: the longest chain, a snapshot and up to 199 deltas. In practice the bytes bound
(``DELTAS_PER_SNAPSHOT``) ends a chain first: with a commit a chunk, a delta is about a sixth of
the state at BankSim's size (chains of about 13) and a fortieth at ten times it (about 75)."""
DELTAS_PER_SNAPSHOT = 2
"""A chain's deltas may add up to twice its snapshot's bytes: a load then reads at most three
times the state, and snapshots cost a commit at most half of what its delta does, at any size."""
SNAPSHOT_BYTES = 64 << 20
"""Default: a chain's deltas may add up to 64 MiB before the next commit is a snapshot."""


class StateError(PatternflowError):
    """No usable state: every committed version is damaged, or the settings differ."""


class StateConflict(PatternflowError):
    """Another writer made a state current since this one read it; this commit did not happen."""


class _ChecksumMismatch(Exception):
    pass


_DAMAGE = (KeyError, ValueError, TypeError, IndexError, OSError, pa.ArrowException, _ChecksumMismatch)
"""What reading a damaged or missing version object raises."""


@dataclass(frozen=True)
class LoadedState:
    state: EngineState
    config: DetectionConfig
    version: int
    skipped_versions: tuple[int, ...] = ()
    """Newer versions that were damaged and passed over (empty in the normal case)."""


@dataclass(frozen=True)
class CommitInfo:
    """What the last commit wrote: for the run's figures and the benchmarks."""

    version: int
    kind: str
    """``snapshot`` or ``delta``."""
    table_bytes: int
    """The version's Parquet objects."""
    manifest_bytes: int
    """Its manifest (written twice: in the version's folder and as ``CURRENT``); its size does not
    grow with the chain."""
    chain: tuple[int, ...]
    chain_bytes: int = 0
    """The Parquet objects of the whole chain: what loading this version reads."""
    fewest_chunks_kept: int | None = None
    """The fewest chunks folded by this version or any version it keeps (its chain's and its
    fall-backs'): a load that finds this one damaged lands on one of them, so what was derived
    from the chunks after it (a partition's staged detections) must be kept until then. None when
    a version kept from a manifest that did not record its chunks is among them."""

    @property
    def bytes_written(self) -> int:
        return self.table_bytes + 2 * self.manifest_bytes


class TracksChanges(Protocol):
    """A state's keeper that records what it changes (``DetectionEngine``): committing it writes
    the changes it recorded since the version it continues, and never compares two whole states."""

    def snapshot(self) -> EngineState: ...

    def changes(self) -> StateChanges | None: ...

    def committed(self, commit_id: str | None) -> None: ...


@dataclass
class _Base:
    """The committed version this store last read or wrote: what a delta continues."""

    version: int
    manifest: dict
    state: EngineState | None
    """The whole state of that version when this store committed it as a plain ``EngineState``,
    to compare the next one with; None otherwise (a delta then needs the recorded changes of a
    ``TracksChanges`` that continues this version)."""
    kept: dict[str, list[int]] = field(default_factory=dict)


class StateStore:
    def __init__(
        self,
        store: ObjectStore,
        prefix: str = "",
        keep: int = 3,
        snapshot_every: int = SNAPSHOT_EVERY,
        snapshot_bytes: int = SNAPSHOT_BYTES,
        deltas_per_snapshot: float = DELTAS_PER_SNAPSHOT,
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be at least 1, got {snapshot_every}")
        if snapshot_bytes < 0:
            raise ValueError(f"snapshot_bytes must not be negative, got {snapshot_bytes}")
        self.store = store
        self.prefix = prefix
        self.keep = max(2, keep)
        self.snapshot_every = snapshot_every
        self.snapshot_bytes = snapshot_bytes
        self.deltas_per_snapshot = deltas_per_snapshot
        self.last_commit: CommitInfo | None = None
        self._seen: tuple[str | None, int | None] | None = None
        """(tag, version) of ``CURRENT`` as this store last read or wrote it (None: not yet; a
        tag of None: there was no CURRENT). A commit replaces exactly that ``CURRENT``."""
        self._base: _Base | None = None

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
        if version is not None and (self._base is None or self._base.version != version):
            # the version to keep as a fall-back, and to continue, when this store commits without loading
            self._base = _Base(version, manifest, None, dict(manifest.get("kept", {})))
        return version, manifest

    def load(self, at_most_chunks: int | None = None) -> LoadedState | None:
        """The newest intact committed state, or None for a stream that has not started.

        ``at_most_chunks``: the newest intact one that has folded at most that many chunks, for
        a part of a stream whose other part fell back to an earlier version (a merchant
        partition behind its stream's state); versions ahead of it are passed over, not damaged.
        """
        version, manifest = self._read_current()
        if self._seen == (None, None):
            return None
        skipped: list[int] = []
        newest = None
        if version is not None and not _ahead(manifest, at_most_chunks):  # the normal case: no listing needed
            try:
                return self._loaded(version, manifest, self._read(manifest))
            except _DAMAGE as exc:
                log.error("state version %s is damaged (%s); trying the version before it", version, exc)
                skipped, newest = [version], version - 1
        elif version is not None:
            newest = version - 1
        for candidate in sorted((v for v in self.versions() if newest is None or v <= newest), reverse=True):
            try:
                manifest = json.loads(self.store.get(self._version_key(candidate, "manifest.json")))
                if _ahead(manifest, at_most_chunks):
                    continue
                loaded = self._read(manifest)
            except _DAMAGE as exc:
                log.error("state version %s is damaged (%s); trying the version before it", candidate, exc)
                skipped.append(candidate)
                continue
            if skipped:
                log.error("state recovered from version %s after skipping damaged versions %s", candidate, skipped)
            return self._loaded(candidate, manifest, loaded, tuple(skipped))
        if at_most_chunks is not None:
            raise StateError(
                f"no intact state version under {self.prefix or 'the state root'} has folded at most {at_most_chunks} chunks "
                f"(damaged versions: {skipped}); reset the stream"
            )
        raise StateError(f"no intact state version under {self.prefix or 'the state root'}: damaged versions {skipped}")

    def _loaded(self, version: int, manifest: dict, state: EngineState, skipped: tuple[int, ...] = ()) -> LoadedState:
        # the tables are not kept: the engine built from them records its changes (TracksChanges)
        self._base = _Base(version, manifest, None, dict(manifest.get("kept", {})))
        return LoadedState(state, DetectionConfig.from_json(manifest["config"]), version, skipped)

    def read_pending(self) -> pa.Table | None:
        """The current version's detections waiting for their file, alone (for the progress page),
        or None when there is no intact current version."""
        version, manifest = self._read_current()
        if version is None:
            return None
        try:
            entry = _own_link(manifest).objects["pending"]
            return _table(entry, self.store.get(entry["key"]))
        except (KeyError, IndexError, TypeError, _ChecksumMismatch):
            return None

    def _read(self, manifest: dict) -> EngineState:
        """The state of ``manifest``'s version: its chain's snapshot with each delta applied."""
        chain = self._links(manifest)
        if chain[0].kind != "snapshot" or any(link.kind != "delta" for link in chain[1:]):
            raise ValueError(f"version {manifest.get('version')}: a chain is a snapshot and then deltas")
        entries = [(i, name, entry) for i, link in enumerate(chain) for name, entry in link.objects.items()]
        datas = _in_parallel(self.store.get, [entry["key"] for _, _, entry in entries])
        objects: list[dict[str, pa.Table]] = [{} for _ in chain]
        for (i, name, entry), data in zip(entries, datas, strict=True):
            objects[i][name] = _table(entry, data)
        tables = _replay_chain(objects)
        return EngineState(**tables, **{k: manifest[k] for k in _COUNTERS}, committed_as=commit_id(manifest))

    def _links(self, manifest: dict) -> list[_Link]:
        """The links of ``manifest``'s chain, the snapshot first: the manifests of the versions
        before it are read together (one round trip to S3)."""
        versions = chain_versions(manifest)
        inline = {link.version: link for link in _inline_links(manifest)}  # a manifest of the earlier format
        earlier = [v for v in versions[:-1] if v not in inline]
        read = _in_parallel(lambda v: _own_link(json.loads(self.store.get(self._version_key(v, "manifest.json")))), earlier)
        found = {**inline, **dict(zip(earlier, read, strict=True)), versions[-1]: _own_link(manifest)}
        links = [found[v] for v in versions]
        if [link.version for link in links] != versions:
            raise ValueError(f"version {manifest.get('version')}: its chain {versions} names manifests of other versions")
        return links

    def commit(self, state: EngineState | TracksChanges, config: DetectionConfig) -> int:
        """Write ``state`` as a new version and make it current; returns its number.

        An engine (``TracksChanges``) is committed as the changes it recorded since the version it
        continues; a plain ``EngineState`` as its difference from the one this store committed
        last. Either way a snapshot when there is nothing to continue (see the module's doc).

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
        version = self._claim(max([*present, seen_version or 0, 0]) + 1)
        base = self._base  # what this store loaded or last committed; a race is caught at CURRENT below
        fallbacks = _fallbacks(base)
        payloads, kind, chain, (snapshot_bytes, chain_bytes), counted = self._payloads(state, base, fallbacks)
        objects = {
            name: {"key": self._version_key(version, f"{name}.parquet"), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in payloads.items()
        }
        _in_parallel(lambda name: self.store.put(objects[name]["key"], payloads[name]), list(payloads))
        chain = [*chain, version]
        own_bytes = sum(map(len, payloads.values()))
        chain_bytes += own_bytes
        if kind == "snapshot":
            snapshot_bytes = own_bytes
        kept = _kept(fallbacks, self.keep, chain[0])
        snapshot_chunks = counted.chunks_folded if kind == "snapshot" else base.manifest.get("snapshot_chunks")
        kept_chunks = _kept_chunks(base, kept)
        manifest = {
            "version": version,
            "id": uuid.uuid4().hex,
            "committed_at": iso_ist(now_ist()),
            "config": config.to_json(),
            "kind": kind,
            "objects": objects,
            "chain": chain,
            "snapshot_bytes": snapshot_bytes,
            "chain_bytes": chain_bytes,
            "kept": kept,
            "snapshot_chunks": snapshot_chunks,
            "kept_chunks": kept_chunks,
            **{k: getattr(counted, k) for k in _COUNTERS},
        }
        text = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        self.store.put(self._version_key(version, "manifest.json"), text)
        try:
            self._seen = (self.store.replace(self.current_key, text, tag), version)
        except WriteConflict:
            raise StateConflict(
                f"{self.current_key} changed since this run read it: another detection run committed meanwhile. "
                f"Nothing of this run became current (its version {version} is left unused); the next run resumes "
                "from the other's state"
            ) from None
        if isinstance(state, EngineState):
            self._base = _Base(version, manifest, state, kept)
        else:
            self._base = _Base(version, manifest, None, kept)
            state.committed(commit_id(manifest))
        kept_snapshots = [snapshot_chunks, *kept_chunks.values()]  # a chain folds the fewest chunks at its snapshot
        fewest = None if None in kept_snapshots else min(kept_snapshots)
        self.last_commit = CommitInfo(version, kind, own_bytes, len(text), tuple(chain), chain_bytes, fewest)
        needed = set(chain) | {v for versions in kept.values() for v in versions}
        unneeded = [v for v in present if v < version and v not in needed]
        if unneeded:
            self.store.delete([key for v in sorted(unneeded) for key in present[v]])
        return version

    def _claim(self, version: int) -> int:
        """The first version number from ``version`` on that no other writer has taken, taken by a
        create-only write (``claimed``): two writers racing from the same state never write into
        the same version's folder, where the loser would overwrite the objects of the winner."""
        while True:
            try:
                self.store.replace(self._version_key(version, "claimed"), b"", None)
                return version
            except WriteConflict:
                version += 1

    def _payloads(
        self, state: EngineState | TracksChanges, base: _Base | None, fallbacks: dict[str, list[int]]
    ) -> tuple[dict[str, bytes], str, list[int], tuple[int, int], EngineState]:
        """The objects of the next version, its kind, the chain it continues (empty: a snapshot),
        that chain's (snapshot bytes, total bytes), and the state whose counters it records.

        A delta only continues a chain that a load can fall back from: some committed version
        kept with a snapshot of its own, so that one damaged object never loses every version."""
        if base is not None:
            chain = chain_versions(base.manifest)
            independent = any(versions[0] != chain[0] for versions in fallbacks.values())
            delta = _delta_on(base, state) if independent and len(chain) < self.snapshot_every else None
            if delta is not None:
                tables, counted = delta
                payloads = {
                    name: parquet_bytes(table, _DELTA_ENCODED.get(name, ()))
                    for name, table in tables.items()
                    if table.num_rows or name == "pending"  # nothing appended, nothing updated: no object
                }
                snapshot, total = _chain_sizes(base.manifest)
                chained = total - snapshot + sum(map(len, payloads.values()))
                if chained <= min(self.snapshot_bytes, self.deltas_per_snapshot * snapshot):
                    return payloads, "delta", chain, (snapshot, total), counted
        whole = state if isinstance(state, EngineState) else state.snapshot()
        return {name: parquet_bytes(getattr(whole, name), _DELTA_ENCODED.get(name, ())) for name in _TABLES}, "snapshot", [], (0, 0), whole


@dataclass(frozen=True)
class _Link:
    """One version of a chain: its kind and its objects (name -> key, SHA-256, bytes)."""

    version: int
    kind: str
    objects: dict[str, dict]


def commit_id(manifest: dict) -> str:
    """The id of a committed version: it tells a delta's base from any other version of the same
    number (another stream's, or one written again after a reset). Manifests written before ids
    were recorded are known by their number and commit time."""
    return manifest.get("id") or f"{manifest['version']}@{manifest.get('committed_at')}"


def chain_versions(manifest: dict) -> list[int]:
    """The versions a manifest's state loads from, its snapshot first and itself last."""
    chain = manifest.get("chain")
    if chain is None:  # written before changelog commits: a snapshot of its own
        return [manifest["version"]]
    return [link["version"] if isinstance(link, dict) else link for link in chain]


def chain_bytes(manifest: dict) -> int:
    """The Parquet bytes of a manifest's whole chain: what loading its version reads."""
    return _chain_sizes(manifest)[1]


def _chain_sizes(manifest: dict) -> tuple[int, int]:
    """(the chain's snapshot's bytes, the whole chain's bytes) of a manifest."""
    if "chain_bytes" in manifest:
        return manifest["snapshot_bytes"], manifest["chain_bytes"]
    links = _inline_links(manifest) or [_own_link(manifest)]
    sizes = [sum(entry["bytes"] for entry in link.objects.values()) for link in links]
    return sizes[0], sum(sizes)


def _own_link(manifest: dict) -> _Link:
    """A manifest's own version: its kind and objects."""
    if "kind" in manifest:
        return _Link(manifest["version"], manifest["kind"], manifest["objects"])
    inline = _inline_links(manifest)
    return inline[-1] if inline else _Link(manifest["version"], "snapshot", manifest["objects"])


def _inline_links(manifest: dict) -> list[_Link]:
    """The chain a manifest of the earlier format wrote out whole, objects and all (empty for
    the current format, whose chain is version numbers)."""
    return [_Link(link["version"], link["kind"], link["objects"]) for link in manifest.get("chain", []) if isinstance(link, dict)]


def _ahead(manifest: dict, at_most_chunks: int | None) -> bool:
    """Whether ``manifest``'s version has folded more than ``at_most_chunks`` chunks (a manifest
    that does not say is left to be found damaged when it is read)."""
    folded = manifest.get("chunks_folded") if isinstance(manifest, dict) else None
    return at_most_chunks is not None and isinstance(folded, int) and folded > at_most_chunks


def _fallbacks(base: _Base | None) -> dict[str, list[int]]:
    """The committed versions a load may fall back to after the next commit, by version, with
    their chains: ``base`` and what it kept."""
    if base is None:
        return {}
    return {str(base.version): chain_versions(base.manifest), **base.kept}


def _kept(fallbacks: dict[str, list[int]], keep: int, snapshot: int) -> dict[str, list[int]]:
    """What pruning leaves of ``fallbacks`` beside the new version (whose chain starts at
    ``snapshot``): the ``keep - 1`` newest, and the newest whose chain shares no object with
    the new one, so that a damaged snapshot or delta still leaves an intact version."""
    newest = sorted(fallbacks, key=int, reverse=True)
    kept = {v: fallbacks[v] for v in newest[: keep - 1]}
    independent = next((v for v in newest if fallbacks[v][0] != snapshot), None)
    if independent is not None:
        kept[independent] = fallbacks[independent]
    return kept


def _kept_chunks(base: _Base | None, kept: dict[str, list[int]]) -> dict[str, int | None]:
    """For each kept version, the chunks folded by its chain's snapshot, the fewest of its chain
    (a link continues the one before it), as ``base``, the version the new one follows, recorded
    them and its own; None for one it does not know (recorded before the chunks were)."""
    if base is None:
        return {}
    known = {**base.manifest.get("kept_chunks", {}), str(base.version): base.manifest.get("snapshot_chunks")}
    return {v: known.get(v) for v in kept}


def _delta_on(base: _Base, state: EngineState | TracksChanges) -> tuple[dict[str, pa.Table], EngineState] | None:
    """The delta tables of ``state`` on the committed version ``base``, and the state whose
    counters the delta records; None when ``state`` does not continue ``base`` as far as known."""
    if isinstance(state, EngineState):
        delta = _delta(base.state, state) if base.state is not None else None
        return (delta, state) if delta is not None else None
    changes = state.changes()
    if changes is None or changes.since != commit_id(base.manifest):
        return None
    appended = changes.appended
    rows = columns.from_numpy(changes.updated_pairs, pa.int32())
    tables = {name: getattr(appended, name) for name in _GROWING}
    tables["pair_updates"] = changes.updates.add_column(0, _ROW, rows)
    tables["pairs"] = appended.pairs
    tables["pending"] = appended.pending
    return tables, appended


def _delta(base: EngineState, state: EngineState) -> dict[str, pa.Table] | None:
    """What ``state`` changed since ``base``, or None when it does not continue ``base`` (a
    growing table lost or changed rows, pairs went missing): then only a snapshot is right.

    Pairs are rows that keep their place: the new ones are appended (``pairs``, whole rows), the
    changed ones are updates (``pair_updates``: the row and just the columns that changed)."""
    old, new = base.pairs, state.pairs
    if new.num_rows < old.num_rows or new.schema != old.schema:
        return None
    delta = {}
    for name in _GROWING:
        before, after = getattr(base, name), getattr(state, name)
        if after.num_rows < before.num_rows or not after.slice(0, before.num_rows).equals(before):
            return None
        delta[name] = after.slice(before.num_rows)
    known = new.slice(0, old.num_rows)
    differs = {name: columns.to_numpy(known.column(name)) != columns.to_numpy(old.column(name)) for name in new.column_names}
    changed_columns = [name for name, mask in differs.items() if mask.any()]
    rows = np.flatnonzero(np.logical_or.reduce([differs[name] for name in changed_columns])) if changed_columns else np.empty(0, np.int64)
    row_ids = columns.from_numpy(rows, pa.int32())  # pa.array(numpy) would import pandas
    delta["pair_updates"] = known.select(changed_columns).take(row_ids).add_column(0, _ROW, row_ids)
    delta["pairs"] = new.slice(old.num_rows)
    delta["pending"] = state.pending
    return delta


def _replay_chain(objects: list[dict[str, pa.Table]]) -> dict[str, pa.Table]:
    """The tables of a chain's last version: the snapshot's, each delta applied in order."""
    snapshot, deltas = objects[0], objects[1:]
    tables = {}
    for name in (*_GROWING, "pairs"):
        parts = [snapshot[name], *(d[name] for d in deltas if name in d)]
        tables[name] = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0]
    updates = [d["pair_updates"] for d in deltas if "pair_updates" in d and d["pair_updates"].num_rows]
    if updates:
        pairs = tables["pairs"]
        values = {name: columns.to_numpy(pairs.column(name)).copy() for name in pairs.column_names}
        for update in updates:
            rows = columns.to_numpy(update.column(_ROW))
            if rows.min() < 0 or rows.max() >= pairs.num_rows:
                raise ValueError(f"a delta updates pair rows {rows.min()}..{rows.max()} of {pairs.num_rows}")
            for name in update.column_names[1:]:
                values[name][rows] = columns.to_numpy(update.column(name))
        tables["pairs"] = columns.table(values, pairs.schema)
    tables["pending"] = objects[-1]["pending"]
    return tables


def _in_parallel(function: Callable[[_Item], _Result], items: list[_Item]) -> list[_Result]:
    """``[function(item) for item in items]`` on threads: a version's objects are read and
    written as one round trip to S3 instead of one each."""
    with ThreadPoolExecutor(max_workers=min(16, len(items)) or 1) as pool:
        return list(pool.map(function, items))


def _table(entry: dict, data: bytes) -> pa.Table:
    """A state object's table, its bytes checked against the manifest's SHA-256 (``entry``)."""
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise _ChecksumMismatch(f"{entry['key']}: checksum mismatch")
    return parquet_table(data)
