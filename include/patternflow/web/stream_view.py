"""Everything the "Pattern detections" page and ``patternflow report`` show, as one plain dict.

Both read a stream through an ``ObjectStore`` and build their figures here, so that the page in
the Airflow UI, its JSON API and the standalone report can never disagree. The dict is made of
JSON types only (it is the API's response body as is).

Reads: the stream manifest and the state's ``CURRENT`` pointer (``status.read_progress``), a
listing of the chunks (uploaded count, end-of-stream marker), every per-chunk metrics record,
a listing of the detection files and each file once to count its rows (later reads come from
``RowCounts``, keyed by the file's MD5, so a page refreshing every few seconds re-reads only
files that changed), and, for the latest rows, the state's detections still waiting for their
file (one small Parquet object) and the newest files. A stream of N > 1 merchant partitions
adds its recorded N and each partition's ``CURRENT`` (``status.read_partitions``: N + 1 small GETs).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from dataclasses import dataclass, field

from patternflow.engine.detections import DETECTION_FILE, FILE_HEADER, PENDING_SCHEMA
from patternflow.engine.state import StateStore
from patternflow.engine.store import ObjectStore
from patternflow.pipeline.layout import PATTERNS
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.status import PartitionProgress, read_chunk_metrics, read_partitions, read_progress

LATEST_ROWS = 20
"""How many of the newest detection rows the view carries."""


@dataclass
class RowCounts:
    """Rows per detection file, remembered by (key, MD5): a file is read again only when it changes."""

    known: dict[tuple[str, str], list[list[str]]] = field(default_factory=dict)

    def rows(self, store: ObjectStore, key: str, digest: str | None) -> list[list[str]]:
        """The file's detection rows (header left out)."""
        if digest is not None and (key, digest) in self.known:
            return self.known[(key, digest)]
        rows = list(csv.reader(io.StringIO(store.get(key).decode())))[1:]
        if digest is not None:
            self.known = {k: v for k, v in self.known.items() if k[0] != key}
            self.known[(key, digest)] = rows
        return rows


def build_view(store: ObjectStore, settings: PipelineSettings, row_counts: RowCounts | None = None, now: float | None = None) -> dict:
    """The stream's progress, per-chunk timings, detections and detection files, as JSON types."""
    row_counts = row_counts or RowCounts()
    progress = read_progress(store, settings, count_uploads=True)
    chunks = [_chunk(record) for record in read_chunk_metrics(store, settings)]
    files, latest = _files(store, settings, row_counts, _waiting(store, settings))
    in_files = sum(f["rows"] for f in files)
    by_pattern = {pattern: progress.detections_by_pattern.get(pattern, 0) for pattern in PATTERNS}
    view = {
        "bucket": settings.bucket,
        "generated_at": time.time() if now is None else now,
        "progress": {
            "started": progress.started,
            "chunks_total": progress.chunks_total,
            "rows_total": progress.rows_total,
            "chunks_uploaded": progress.chunks_uploaded,
            "chunks_processed": progress.chunks_folded,
            "rows_processed": progress.rows_folded,
            "end_of_stream_marker": bool(progress.end_of_stream_marker),
            "finished": progress.finished,
            "committed_at": progress.committed_at,
        },
        "detections": {
            "total": sum(by_pattern.values()),
            "by_pattern": by_pattern,
            "in_files": in_files,
            "pending": max(sum(by_pattern.values()) - in_files, 0),
        },
        "lag_seconds": _summary([c["lag_seconds"] for c in chunks]),
        "chunks": chunks,
        "files": files,
        "latest_detections": latest,
    }
    partitions = read_partitions(store, settings)
    if partitions:  # a stream of one partition keeps the view it always had
        view["partitions"] = [_partition(p) for p in partitions]
    return view


def _partition(progress: PartitionProgress) -> dict:
    """One merchant partition: how far its committed state reaches, its size and its last run."""
    return {
        "partition": progress.partition,
        "started": progress.started,
        "chunks_processed": progress.chunks_folded,
        "last_chunk": progress.chunks_folded - 1 if progress.chunks_folded else None,
        "state_version": progress.state_version,
        "state_bytes": progress.state_bytes,
        "committed_at": progress.committed_at,
    }


def _chunk(record: dict) -> dict:
    """One chunk's metrics record, with the durations the page plots."""
    committed = record.get("committed_at")
    new = {pattern: record["new_detections"].get(pattern, 0) for pattern in PATTERNS}
    return {
        "index": record["index"],
        "rows": record["rows"],
        "rows_quarantined": record.get("rows_quarantined", 0),
        "uploaded_at": record["uploaded_at"],
        "started_at": record["started_at"],
        "finished_at": record["finished_at"],
        "committed_at": committed,
        "processing_seconds": record["finished_at"] - record["started_at"],
        "lag_seconds": (committed or record["finished_at"]) - record["uploaded_at"],
        "new_detections": new,
        "files": [key.rsplit("/", 1)[-1] for key in record["files"]],
    }


def _waiting(store: ObjectStore, settings: PipelineSettings) -> list[list[str]]:
    """The detections the state holds until their file has its 50 rows, as file rows."""
    pending = StateStore(store, settings.state_prefix).read_pending()
    if pending is None:
        return []
    return [list(row) for row in zip(*(pending.column(name).to_pylist() for name in PENDING_SCHEMA.names), strict=True)]


def _files(
    store: ObjectStore, settings: PipelineSettings, row_counts: RowCounts, waiting: list[list[str]]
) -> tuple[list[dict], list[dict]]:
    """Each detection file with its row count, in file order, and the newest rows (newest first):
    those still ``waiting`` for their file (``file`` empty), then those of the newest files."""
    digests = store.digests(settings.output_prefix)
    keys = sorted((k for k in store.list(settings.output_prefix) if _file_number(k) >= 0), key=_file_number)
    files, rows_by_key = [], {}
    for key in keys:
        rows_by_key[key] = row_counts.rows(store, key, digests.get(key))
        files.append({"name": key[len(settings.output_prefix) :], "key": key, "rows": len(rows_by_key[key])})
    latest = [{"file": "", **dict(zip(FILE_HEADER, row, strict=True))} for row in reversed(waiting[-LATEST_ROWS:])]
    if len(latest) == LATEST_ROWS:
        return files, latest
    for key in reversed(keys):
        for row in reversed(rows_by_key[key]):
            latest.append({"file": key[len(settings.output_prefix) :], **dict(zip(FILE_HEADER, row, strict=False))})
            if len(latest) == LATEST_ROWS:
                return files, latest
    return files, latest


def _file_number(key: str) -> int:
    """The number of the detection file at ``key``; -1 for another object."""
    match = DETECTION_FILE.fullmatch(key.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else -1


def _summary(values: list[float]) -> dict | None:
    """Min, median, 95th percentile (nearest rank: the smallest value with 95% of the values at or
    below it) and max; None when there is no value."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[math.ceil(0.95 * len(ordered)) - 1],
        "max": ordered[-1],
    }
