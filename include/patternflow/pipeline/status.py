"""Where a stream stands, read from S3 alone: what the sensor, `patternflow run` and the UI show.

Cheap to call every second: two small JSON objects (the stream manifest and the state's
``CURRENT`` pointer), plus a listing when the caller asks how many chunks are up.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from patternflow.engine.state import chain_bytes
from patternflow.engine.store import ObjectStore
from patternflow.pipeline.layout import (
    PATTERNS,
    chunk_key,
    current_state_key,
    end_of_stream_key,
    manifest_key,
    metrics_prefix,
    partition_state_prefix,
    partitioning_key,
    quarantined_chunk_key,
)
from patternflow.pipeline.settings import PipelineSettings


@dataclass
class StreamProgress:
    started: bool = False
    """The producer has written the stream manifest."""
    chunks_total: int | None = None
    rows_total: int | None = None
    chunks_uploaded: int | None = None
    """Chunks on S3 (only when asked for: it takes a listing)."""
    end_of_stream_marker: bool | None = None
    chunks_folded: int = 0
    rows_folded: int = 0
    detections_by_pattern: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    files_written: int = 0
    finished: bool = False
    """The detector has folded every chunk and written the last file."""
    committed_at: str | None = None

    @property
    def detections(self) -> int:
        return sum(self.detections_by_pattern.values())

    def to_json(self) -> dict:
        return asdict(self)


def read_progress(store: ObjectStore, settings: PipelineSettings, count_uploads: bool = False) -> StreamProgress:
    progress = StreamProgress()
    try:
        manifest = json.loads(store.get(manifest_key(settings)))
        progress.started = True
        progress.chunks_total = manifest["chunks"]
        progress.rows_total = manifest["rows"]
    except KeyError:
        pass
    try:
        current = json.loads(store.get(current_state_key(settings)))
        progress.chunks_folded = current["chunks_folded"]
        progress.rows_folded = current["rows_folded"]
        progress.detections_by_pattern = current["detections_by_pattern"]
        progress.files_written = current["files_written"]
        progress.finished = current["finished"]
        progress.committed_at = current.get("committed_at")
    except (KeyError, ValueError):
        pass
    if count_uploads:
        keys = set(store.list(settings.chunks_prefix)) | set(store.list(settings.quarantine_prefix))
        total = progress.chunks_total or 0
        progress.chunks_uploaded = sum(
            1 for i in range(total) if chunk_key(settings, i) in keys or quarantined_chunk_key(settings, i) in keys
        )
        progress.end_of_stream_marker = end_of_stream_key(settings) in keys
    return progress


def read_chunk_metrics(store: ObjectStore, settings: PipelineSettings) -> list[dict]:
    """Every chunk's metrics record, in chunk order (a redone run's records replace the old ones)."""
    by_chunk: dict[int, dict] = {}
    for key in store.list(metrics_prefix(settings)):
        for record in json.loads(store.get(key)):
            by_chunk[record["index"]] = record
    return [by_chunk[i] for i in sorted(by_chunk)]


def expected_key(store: ObjectStore, settings: PipelineSettings, progress: StreamProgress | None = None) -> str | None:
    """What the sensor waits for: the next chunk, or the end-of-stream marker; None when finished."""
    progress = progress or read_progress(store, settings)
    if progress.finished:
        return None
    if progress.chunks_total is not None and progress.chunks_folded >= progress.chunks_total:
        return end_of_stream_key(settings)
    return chunk_key(settings, progress.chunks_folded)


@dataclass(frozen=True)
class Gap:
    """Chunk ``missing`` is not on S3 although a later chunk, ``later``, has been since ``since``."""

    missing: int
    later: int
    since: float

    def describe(self, now: float) -> str:
        return (
            f"chunk {self.missing} is missing: chunk {self.later} arrived {now - self.since:.0f} s ago and later chunks "
            f"wait behind it (chunks are folded in order, each exactly once)"
        )


def open_gap(store: ObjectStore, settings: PipelineSettings, progress: StreamProgress | None = None) -> Gap | None:
    """An out-of-order arrival holding up the stream, if there is one."""
    progress = progress or read_progress(store, settings)
    if progress.finished:
        return None
    missing = progress.chunks_folded
    pattern = re.compile(re.escape(settings.chunks_prefix) + r"chunk_(\d+)\.csv")
    later = sorted(int(m.group(1)) for key in store.list(settings.chunks_prefix) if (m := pattern.fullmatch(key)))
    later = [i for i in later if i > missing]
    if not later or store.exists(chunk_key(settings, missing)):
        return None
    return Gap(missing, later[0], store.fetch(chunk_key(settings, later[0])).written_at)


@dataclass(frozen=True)
class PartitionProgress:
    """Where one merchant partition stands: its committed state, read from its ``CURRENT`` alone."""

    partition: int
    started: bool = False
    """The partition has committed a state (a partition task has run to its end at least once)."""
    chunks_folded: int = 0
    committed_at: str | None = None
    """Its last commit (IST): when a task of this partition last ran to its end."""
    state_version: int | None = None
    state_bytes: int = 0
    """The objects of its committed chain, snapshot and deltas: what its next task loads."""

    def to_json(self) -> dict:
        return asdict(self)


def recorded_partitions(store: ObjectStore, settings: PipelineSettings) -> int:
    """The stream's number of merchant partitions, as its first detection run recorded it (1 before)."""
    try:
        return int(json.loads(store.get(partitioning_key(settings)))["partitions"])
    except (KeyError, ValueError, TypeError):
        return 1


def read_partitions(store: ObjectStore, settings: PipelineSettings) -> list[PartitionProgress]:
    """Each partition of a partitioned stream, in order (one GET each); empty for a stream of one
    partition, whose state is the stream's own (``read_progress``)."""
    count = recorded_partitions(store, settings)
    if count <= 1:
        return []
    return [_partition_progress(store, settings, k) for k in range(count)]


def _partition_progress(store: ObjectStore, settings: PipelineSettings, partition: int) -> PartitionProgress:
    try:
        current = json.loads(store.get(f"{partition_state_prefix(settings, partition)}CURRENT"))
        return PartitionProgress(
            partition,
            started=True,
            chunks_folded=current["chunks_folded"],
            committed_at=current.get("committed_at"),
            state_version=current.get("version"),
            state_bytes=chain_bytes(current),
        )
    except (KeyError, ValueError, TypeError):  # no commit yet (or an unreadable one): not started
        return PartitionProgress(partition)
