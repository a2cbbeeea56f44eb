"""Mechanism X: turn the transactions file into a stream of chunks on S3.

A stream starts when the producer first runs with no stream under the chunks prefix: it checks
and uploads CustomerImportance to the reference prefix (in batches and pieces, never holding
either file whole), then writes the stream manifest
(``_stream.json``: source, size, row and chunk counts, the byte offset of every chunk, start
time and tick). The manifest is the stream's commit point; from then on every run works from it:

- chunk i is due ``i * tick`` seconds after the start; a run uploads every due chunk that is
  not there yet, in order, so a tick the scheduler missed is caught up, not skipped;
- chunk i's key and bytes depend only on i (header + its byte range of the source), so a
  retried or re-run tick writes the same bytes to the same key;
- after the last chunk the end-of-stream marker (``_end_of_stream.json``) records the chunk
  and row counts, and later runs have nothing to do.

Fast mode ignores the pace and uploads every remaining chunk in one run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from patternflow.engine.clock import iso_ist_epoch
from patternflow.engine.detection_engine import weight_ranks
from patternflow.engine.parquet import parquet_bytes
from patternflow.engine.store import ObjectStore
from patternflow.errors import PatternflowError
from patternflow.ingest.chunking import ChunkedFile, assemble
from patternflow.ingest.parsing import importance_batches, parse_transactions
from patternflow.pipeline.layout import (
    chunk_key,
    end_of_stream_key,
    importance_key,
    manifest_key,
    quarantined_chunk_key,
    weight_ranks_key,
)
from patternflow.pipeline.settings import PREFIXES, PipelineSettings
from patternflow.pipeline.sources import SourceOpener, pieces

log = logging.getLogger(__name__)


class StreamError(PatternflowError):
    """The stream on S3 cannot be continued as asked (changed source or settings)."""


@dataclass(frozen=True)
class StreamManifest:
    transactions: str
    importance: str
    source_size: int
    rows: int
    chunk_size: int
    chunks: int
    tick_seconds: float
    started_at: str
    started_epoch: float
    header: str
    offsets: list[int]
    """Byte offset in the source where each chunk's rows start, then where the last one ends."""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamManifest:
        return cls(**json.loads(data))

    def chunk_rows(self, index: int) -> int:
        return min(self.chunk_size, self.rows - index * self.chunk_size)


@dataclass
class ProduceReport:
    uploaded: list[int] = field(default_factory=list)
    """Chunk indexes uploaded by this run."""
    chunks_present: int = 0
    chunks: int = 0
    rows_uploaded: int = 0
    stream_started: bool = False
    end_of_stream: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def load_manifest(store: ObjectStore, settings: PipelineSettings) -> StreamManifest | None:
    try:
        return StreamManifest.from_bytes(store.get(manifest_key(settings)))
    except KeyError:
        return None


def produce(
    store: ObjectStore, settings: PipelineSettings, open_source: SourceOpener, now: float | Callable[[], float], fast: bool
) -> ProduceReport:
    """Upload every chunk that is due at ``now`` (epoch seconds), or all of them in fast mode.

    ``now`` may be a clock (``time.time``), read when it is needed: a stream then starts its
    ticks once its reference data and chunk offsets are ready, not when the task began, so that
    a start that takes seconds (CustomerImportance at ten times BankSim) is not followed by a
    burst of every chunk that fell due meanwhile."""
    clock = now if callable(now) else lambda: now
    report = ProduceReport()
    manifest = load_manifest(store, settings)
    if manifest is None:
        manifest = start_stream(store, settings, open_source, clock)
        report.stream_started = True
    else:
        _check_same_stream(manifest, settings)
    report.chunks = manifest.chunks
    present = set(store.list(settings.chunks_prefix)) | set(store.list(settings.quarantine_prefix))
    first_missing = next((i for i in range(manifest.chunks) if not _uploaded(settings, i, present)), manifest.chunks)
    due = manifest.chunks if fast else min(manifest.chunks, math.floor((clock() - manifest.started_epoch) / manifest.tick_seconds) + 1)
    if first_missing < due:
        source = open_source(manifest.transactions)
        if source.size() != manifest.source_size:
            raise StreamError(
                f"{manifest.transactions} changed since the stream started ({manifest.source_size:,} bytes then, "
                f"{source.size():,} now); reset the stream to start over from the new file"
            )
        header = manifest.header.encode()
        for index in range(first_missing, due):
            rows = source.read_range(manifest.offsets[index], manifest.offsets[index + 1])
            store.put(chunk_key(settings, index), assemble(header, rows))
            report.uploaded.append(index)
            report.rows_uploaded += manifest.chunk_rows(index)
    report.chunks_present = max(first_missing, due)
    if report.chunks_present == manifest.chunks:
        if end_of_stream_key(settings) not in present:
            marker = {"chunks": manifest.chunks, "rows": manifest.rows, "finished_at": iso_ist_epoch(clock())}
            store.put(end_of_stream_key(settings), json.dumps(marker).encode())
        report.end_of_stream = True
    if report.uploaded:
        log.info(
            "uploaded chunks %s..%s (%s rows); %s of %s chunks are up%s",
            report.uploaded[0],
            report.uploaded[-1],
            f"{report.rows_uploaded:,}",
            report.chunks_present,
            manifest.chunks,
            "; end of stream written" if report.end_of_stream else "",
        )
    else:
        log.info(
            "nothing due: %s of %s chunks are up%s",
            report.chunks_present,
            manifest.chunks,
            " (stream complete)" if report.end_of_stream else "",
        )
    return report


def _uploaded(settings: PipelineSettings, index: int, present: set[str]) -> bool:
    """On S3, or moved to quarantine by the detector (uploading it again would not help)."""
    return chunk_key(settings, index) in present or quarantined_chunk_key(settings, index) in present


def start_stream(store: ObjectStore, settings: PipelineSettings, open_source: SourceOpener, clock: Callable[[], float]) -> StreamManifest:
    """Check and upload the reference data, then commit the stream by writing its manifest; its
    first tick is when that is done (``clock``).

    Both files are read by byte range, a batch or window at a time, never whole: CustomerImportance
    is checked and summed into its weight ranks batch by batch, then copied piece by piece; the
    transactions are scanned for the chunks' offsets."""
    importance = open_source(settings.importance)
    importance_size = importance.size()
    # a bad file stops the stream before any chunk; its weight ranks are what the detector starts
    # from, so that no detection task reads the (large) file again
    ranks = weight_ranks(importance_batches(importance.read_range, importance_size, settings.importance))
    store.put(weight_ranks_key(settings), parquet_bytes(ranks.table))
    store.put_stream(importance_key(settings), pieces(importance, importance_size))

    source = open_source(settings.transactions)
    size = source.size()
    chunked = ChunkedFile.scan(source.read_range, size, settings.chunk_size)
    parse_transactions(chunked.header, settings.transactions)  # an empty file or a wrong header stops it too
    now = clock()
    manifest = StreamManifest(
        transactions=settings.transactions,
        importance=settings.importance,
        source_size=size,
        rows=chunked.rows,
        chunk_size=settings.chunk_size,
        chunks=chunked.chunks,
        tick_seconds=settings.tick_seconds,
        started_at=iso_ist_epoch(now),
        started_epoch=now,
        header=chunked.header.decode("utf-8", errors="replace"),
        offsets=chunked.offsets(),
    )
    store.put(manifest_key(settings), manifest.to_bytes())
    log.info(
        "stream started from %s: %s rows in %s chunks of %s, one every %s s",
        settings.transactions,
        f"{manifest.rows:,}",
        manifest.chunks,
        f"{manifest.chunk_size:,}",
        manifest.tick_seconds,
    )
    return manifest


def _check_same_stream(manifest: StreamManifest, settings: PipelineSettings) -> None:
    if (manifest.transactions, manifest.chunk_size) != (settings.transactions, settings.chunk_size):
        raise StreamError(
            f"s3://{settings.bucket}/{settings.chunks_prefix} holds a stream of {manifest.transactions} in chunks of "
            f"{manifest.chunk_size:,}, not {settings.transactions} in chunks of {settings.chunk_size:,}; "
            "reset the stream (patternflow reset, or the stream_reset DAG) to start another"
        )


def reset_stream(store: ObjectStore, settings: PipelineSettings) -> dict[str, int]:
    """Delete one stream's chunks, reference data, state, detections and quarantine; nothing else."""
    removed = {}
    for prefix in (getattr(settings, name) for name in PREFIXES):
        keys = store.list(prefix)
        store.delete(keys)
        removed[prefix] = len(keys)
    log.info("reset s3://%s: removed %s", settings.bucket, ", ".join(f"{n} objects under {p}" for p, n in removed.items()))
    return removed
