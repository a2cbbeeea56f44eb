"""Mechanism Y's work for one run: fold every waiting chunk, write full detection files, commit.

A run opens the engine at the last committed state, takes every consecutive chunk already on S3
from the next expected one (as Spark's ``maxBytesPerTrigger`` bounds a micro-batch by size, not
by a count: at most ``max_rows_per_run`` rows, never less than one chunk, and at most
``max_chunks_per_run`` chunks where that is set), folds them one by one, writes each detection
file as soon as its 50 rows exist, and commits the state once at the end, as a delta of what the
run changed (``patternflow.engine.state``). A detection task may then go on with the next run at
once, on the engine it holds, while chunks keep landing (``keep_running_seconds``). When every
chunk of the stream is folded and the end-of-stream marker is there, it writes the last partial
file and marks the stream finished.

Files are written before the state that accounts for them is committed: a run that dies in
between is redone from the previous state, and rewrites the same rows under the same file
names. Likewise a quarantined chunk is copied aside at once but removed from the chunks prefix
only after that commit, so a run that dies in between finds it again where it expects it.
Per-chunk metrics (upload, start, end and commit times, detections, files) are written next to
the state after the commit, for the progress display and the benchmarks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from patternflow.engine.clock import Clock, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import FOLDED_COLUMNS, WEIGHT_COLUMNS, DetectionEngine, WeightRanks
from patternflow.engine.parquet import parquet_table
from patternflow.engine.state import StateStore
from patternflow.engine.store import ObjectStore, WriteConflict, range_reader
from patternflow.engine.stream import commit, open_engine, write_files
from patternflow.errors import InputError
from patternflow.ingest import columns, schema
from patternflow.ingest.parsing import check_csv, importance_batches
from patternflow.pipeline.layout import (
    PATTERNS,
    chunk_key,
    conflict_key,
    current_state_key,
    digests_key,
    end_of_stream_key,
    importance_key,
    metrics_key,
    metrics_prefix,
    partitioning_key,
    quarantine_report_key,
    quarantined_chunk_key,
    weight_ranks_key,
)
from patternflow.pipeline.producer import StreamManifest, load_manifest
from patternflow.pipeline.settings import PipelineSettings, SettingsError

log = logging.getLogger(__name__)


@dataclass
class ChunkMetrics:
    index: int
    rows: int
    uploaded_at: float
    started_at: float
    finished_at: float
    new_detections: dict[str, int]
    files: list[str]
    rows_quarantined: int = 0
    committed_at: float | None = None

    @property
    def lag_seconds(self) -> float:
        """From the chunk's upload to the commit of its detections."""
        return (self.committed_at or self.finished_at) - self.uploaded_at


@dataclass
class DetectionReport:
    chunks: list[int] = field(default_factory=list)
    rows: int = 0
    new_detections: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    files: list[str] = field(default_factory=list)
    lag_seconds: dict[str, float] = field(default_factory=dict)
    end_of_stream: bool = False
    state_version: int | None = None
    conflicts: list[int] = field(default_factory=list)
    """Folded chunks uploaded again with different bytes: reported and kept aside, never refolded."""

    def to_json(self) -> dict:
        return asdict(self)

    def lineage(self) -> dict:
        """What the run added to the detections' Asset: its event's extra in the Assets view."""
        return {"chunks": self.chunks, "files": self.files, "new_detections": self.new_detections}

    def describe(self) -> str:
        if not self.chunks and not self.files and not self.conflicts:
            return "no new chunk" + (" (stream finished)" if self.end_of_stream else "")
        taken = f"chunks {self.chunks[0]}..{self.chunks[-1]}" if self.chunks else "no chunk"
        found = ", ".join(f"{p} {n}" for p, n in self.new_detections.items())
        lag = (
            f"; lag min {self.lag_seconds['min']:.2f} s, median {self.lag_seconds['median']:.2f} s, max {self.lag_seconds['max']:.2f} s"
            if self.lag_seconds
            else ""
        )
        end = "; end of stream: last file written" if self.end_of_stream else ""
        if self.conflicts:
            end += f"; CONFLICTS (re-uploaded with other bytes, kept aside): chunks {self.conflicts}"
        return f"{taken} ({self.rows:,} rows): new detections {found}; {len(self.files)} files written{lag}{end}"


def detect(
    store: ObjectStore,
    settings: PipelineSettings,
    config: DetectionConfig | None = None,
    clock: Clock = now_ist,
    wall: Callable[[], float] = time.time,
    keep_running_seconds: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> DetectionReport:
    """Detection runs over the chunks waiting on ``store``: one, or, for up to
    ``keep_running_seconds``, one after another while chunks keep landing; the report covers them all.

    Each run takes every consecutive chunk waiting, up to the run bounds, and commits. The next
    run starts at once on the engine already held (no state read, no task start in between), so
    a detector that keeps pace with the producer pays the orchestrator's cost of a task once for
    many runs. When a run finds nothing waiting, the next chunk (or the end-of-stream marker) is
    waited for, looked for every ``poke_interval_seconds``, for up to ``idle_seconds``: a wait
    that bridges the producer's pauses costs less than the task start that would follow. It
    stops once nothing landed in that time, at the stream's end, or once the time is up; every
    run is committed on its own, so a kill loses at most the one under way."""
    stream = _OpenStream.open(store, settings, config, clock, wall)
    if stream is None:
        return DetectionReport()
    try:
        deadline = wall() + keep_running_seconds
        report = stream.start()
        while not report.end_of_stream:
            taken = stream.run(report)
            if wall() >= deadline:
                break
            if not taken and not stream.next_lands(min(deadline, wall() + settings.idle_seconds), sleep):
                break
        stream.summarise(report)
    finally:
        stream.engine.close()
    log.info("%s", report.describe())
    return report


@dataclass
class _OpenStream:
    """The stream as detection runs hold it: its manifest, state store, engine and folded digests."""

    store: ObjectStore
    settings: PipelineSettings
    manifest: StreamManifest
    state: StateStore
    engine: DetectionEngine
    clock: Clock
    wall: Callable[[], float]
    digests: FoldedDigests = field(default_factory=lambda: FoldedDigests())
    metrics: list[ChunkMetrics] = field(default_factory=list)
    final_files: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls, store: ObjectStore, settings: PipelineSettings, config: DetectionConfig | None, clock: Clock, wall: Callable[[], float]
    ) -> _OpenStream | None:
        """The stream at its last committed state; None when the producer has not started it."""
        manifest = load_manifest(store, settings)
        if manifest is None:
            log.info("no stream under %s yet", settings.chunks_prefix)
            return None
        if settings.partitions != 1:
            raise SettingsError(
                f"partitions is {settings.partitions}: detection runs as one task per partition (detect_partition, then "
                "write_detection_files); the detection DAG takes that shape when PATTERNFLOW_PARTITIONS is set where it is parsed"
            )
        check_partitioning(store, settings)
        config = DetectionConfig(**{**(config or DetectionConfig()).to_json(), "chunk_size": manifest.chunk_size})
        state = StateStore(
            store, settings.state_prefix, snapshot_every=settings.state_snapshot_every, snapshot_bytes=settings.state_snapshot_bytes
        )
        engine = open_engine(state, lambda: stream_weights(store, settings), config, clock)
        return cls(store, settings, manifest, state, engine, clock, wall)

    def start(self) -> DetectionReport:
        """The report of the runs to come, with the conflicts found among the chunks folded
        before them; the quarantine moves a dead run left half done are finished."""
        report = DetectionReport()
        self.digests = FoldedDigests.load(self.store, self.settings)
        uploaded = folded_chunks(self.settings, self.store.digests(self.settings.chunks_prefix), self.engine.chunks_folded)
        report.conflicts = find_conflicts(self.store, self.settings, self.digests, uploaded)
        finish_moves(self.store, self.settings, self.digests, uploaded)
        report.end_of_stream = self.engine.finished
        return report

    def run(self, report: DetectionReport) -> int:
        """One run: fold every consecutive chunk waiting, up to the run bounds, write the full
        files and commit; the number of chunks taken."""
        store, settings, manifest, engine = self.store, self.settings, self.manifest, self.engine
        metrics: list[ChunkMetrics] = []
        moved: list[str] = []
        rows_taken = 0
        while engine.chunks_folded < manifest.chunks and may_take(settings, metrics, rows_taken, manifest.chunk_rows(engine.chunks_folded)):
            index = engine.chunks_folded
            rows_taken += manifest.chunk_rows(index)
            key = chunk_key(settings, index)
            began = self.clock()
            started = self.wall()
            try:
                stored = store.fetch(key)
            except KeyError:
                break
            accepted = accept_chunk(store, settings, index, stored.data, manifest.chunk_rows(index))
            if accepted.quarantined:
                moved.append(key)
                self.digests.quarantined.append(index)
            self.digests.md5[str(index)] = hashlib.md5(stored.data).hexdigest()
            self.digests.etag[str(index)] = stored.tag.strip('"')
            result = engine.fold(index, accepted.table, began=began)
            files = write_files(store, settings.output_prefix, result.files)
            metrics.append(
                ChunkMetrics(
                    index, result.rows, stored.written_at, started, self.wall(), result.new_detections, files, accepted.rows_set_aside
                )
            )
        if engine.chunks_folded == manifest.chunks and store.exists(end_of_stream_key(settings)):
            self.final_files += list_final_files(store, settings, metrics, write_files(store, settings.output_prefix, engine.finish()))
            report.end_of_stream = True
        if metrics or report.end_of_stream:
            report.state_version = commit_run(store, settings, self.digests, metrics, moved, lambda: commit(self.state, engine), self.wall)
        self.metrics += metrics
        return len(metrics)

    def next_lands(self, until: float, sleep: Callable[[float], None]) -> bool:
        """Whether the next chunk the state expects, or the end-of-stream marker once every chunk
        is folded, is on the store by ``until`` (wall time), looking every poke interval."""
        folded = self.engine.chunks_folded
        key = chunk_key(self.settings, folded) if folded < self.manifest.chunks else end_of_stream_key(self.settings)
        while True:
            if self.store.exists(key):
                return True
            left = until - self.wall()
            if left <= 0:
                return False
            sleep(min(self.settings.poke_interval_seconds, left))

    def summarise(self, report: DetectionReport) -> None:
        summarise(report, self.metrics, self.final_files)


def check_partitioning(store: ObjectStore, settings: PipelineSettings) -> None:
    """A stream keeps the number of partitions it started with: the first detection run records
    it, and a run under another number fails naming the setting and the way out."""
    key = partitioning_key(settings)
    try:
        recorded = json.loads(store.get(key))["partitions"]
    except KeyError:
        if settings.partitions != 1 and store.exists(current_state_key(settings)):
            recorded = 1  # a stream whose detection started before partitions were recorded
        else:
            try:
                store.replace(key, json.dumps({"partitions": settings.partitions}).encode(), None)
                return
            except WriteConflict:  # another task recorded it first
                recorded = json.loads(store.get(key))["partitions"]
    if recorded != settings.partitions:
        raise SettingsError(
            f"partitions is {settings.partitions}, but the stream's detection started with {recorded} partition(s); "
            "the partitions of a running stream cannot change: reset the stream (patternflow reset, or the stream_reset DAG) "
            "to start another with the new number"
        )


def stream_weights(store: ObjectStore, settings: PipelineSettings) -> WeightRanks | Iterator[pa.Table]:
    """What a stream's first detection run starts from: the weight ranks the producer computed
    from CustomerImportance at stream start, one row a pair; for a stream started without them,
    the file itself in batches of byte ranges, never whole."""
    try:
        return WeightRanks(parquet_table(store.get(weight_ranks_key(settings))))
    except KeyError:
        reference = importance_key(settings)
        return importance_batches(range_reader(store, reference), store.size(reference), _uri(settings, reference), columns=WEIGHT_COLUMNS)


def may_take(settings: PipelineSettings, taken: list, rows_taken: int, next_rows: int) -> bool:
    """Whether a run that took ``taken`` chunks of ``rows_taken`` rows may take one of ``next_rows`` more."""
    if not taken:
        return True
    if settings.max_chunks_per_run and len(taken) >= settings.max_chunks_per_run:
        return False
    return rows_taken + next_rows <= settings.max_rows_per_run


def commit_run(
    store: ObjectStore,
    settings: PipelineSettings,
    digests: FoldedDigests,
    metrics: list[ChunkMetrics],
    moved: list[str],
    commit_state: Callable[[], int | None],
    wall: Callable[[], float],
) -> int | None:
    """Make a run durable, in the order that keeps every crash safe: the folded chunks' digests
    (so that the chunks a commit makes folded always have them), the state (the commit point),
    the chunks' metrics with their commit time, then the removal of quarantined originals.
    Returns the state's new version."""
    if metrics:
        store.put(digests_key(settings), digests.to_bytes())
    version = commit_state()
    committed = wall()
    for chunk in metrics:
        chunk.committed_at = committed
    if metrics:
        _put_metrics(store, settings, metrics)
    _remove_originals(store, moved)
    return version


def list_final_files(store: ObjectStore, settings: PipelineSettings, metrics: list[ChunkMetrics], final_files: list[str]) -> list[str]:
    """Record the stream's last (partial) file with the run's last chunk, or, for a run that took
    no chunk (the end-of-stream marker came after the last chunk's run), in the newest record on
    the store; returns the files no record of this run lists."""
    if metrics:
        metrics[-1].files += final_files
        return []
    if final_files:
        _add_to_last_record(store, settings, final_files)
    return final_files


def _put_metrics(store: ObjectStore, settings: PipelineSettings, metrics: list[ChunkMetrics]) -> None:
    """One record a run, named for its first chunk: a run redone from the same state replaces it."""
    store.put(metrics_key(settings, metrics[0].index), json.dumps([asdict(m) for m in metrics]).encode())


def _add_to_last_record(store: ObjectStore, settings: PipelineSettings, files: list[str]) -> None:
    """Add ``files`` (the last, partial one) to the newest chunk's metrics record."""
    keys = store.list(metrics_prefix(settings))
    if not keys:
        return
    records = json.loads(store.get(keys[-1]))
    if records:
        records[-1]["files"] += [name for name in files if name not in records[-1]["files"]]
        store.put(keys[-1], json.dumps(records).encode())


@dataclass
class FoldedDigests:
    """What each folded chunk's object was when folded (``state/chunk_digests.json``)."""

    md5: dict[str, str] = field(default_factory=dict)
    """Chunk index -> MD5 of the bytes folded."""
    etag: dict[str, str] = field(default_factory=dict)
    """Chunk index -> the object's ETag then: its MD5, except under SSE-KMS encryption or the like."""
    quarantined: list[int] = field(default_factory=list)
    """Chunks moved to the quarantine prefix (folded as empty)."""

    def to_bytes(self) -> bytes:
        return json.dumps({"md5": self.md5, "etag": self.etag, "quarantined": self.quarantined}).encode()

    @classmethod
    def load(cls, store: ObjectStore, settings: PipelineSettings) -> FoldedDigests:
        try:
            data = json.loads(store.get(digests_key(settings)))
        except (KeyError, ValueError):
            return cls()
        if "md5" not in data:  # written before ETags were kept: index -> MD5
            return cls(md5=data)
        return cls(md5=data["md5"], etag=data.get("etag", {}), quarantined=data.get("quarantined", []))


def folded_chunks(settings: PipelineSettings, uploaded: dict[str, str], chunks_folded: int) -> dict[int, tuple[str, str]]:
    """The already folded chunks among ``uploaded`` (key -> ETag, ``ObjectStore.digests``):
    index -> (key, ETag)."""
    pattern = re.compile(re.escape(settings.chunks_prefix) + r"chunk_(\d+)\.csv")
    folded = {}
    for key, digest in uploaded.items():
        match = pattern.fullmatch(key)
        if match and int(match.group(1)) < chunks_folded:
            folded[int(match.group(1))] = (key, digest)
    return folded


def find_conflicts(
    store: ObjectStore, settings: PipelineSettings, folded: FoldedDigests, uploaded: dict[int, tuple[str, str]]
) -> list[int]:
    """Chunks already folded whose object now holds other bytes (``uploaded``: ``folded_chunks``).

    The same bytes again (a re-run producer tick) are ignored: the ETag is the one seen when the
    chunk was folded or the MD5 of its bytes then, or else the bytes are read and compared. Other
    bytes are never folded a second time: they are copied to the quarantine prefix with a report,
    once, and logged as an error. Chunks folded before a crash that lost their digest are not checked.
    """
    conflicts = []
    for index, (key, etag) in sorted(uploaded.items()):
        was = folded.md5.get(str(index))
        if was is None or etag in (was, folded.etag.get(str(index))):
            continue
        data = store.get(key)
        digest = hashlib.md5(data).hexdigest()
        if digest == was:  # the same bytes under another ETag
            folded.etag[str(index)] = etag
            continue
        conflicts.append(index)
        report_key = conflict_key(settings, index, digest, "json")
        if store.exists(report_key):
            continue
        store.put(conflict_key(settings, index, digest, "csv"), data)
        report = {"chunk": index, "folded_md5": was, "uploaded_md5": digest, "action": "kept aside, not folded"}
        store.put(report_key, json.dumps(report, indent=1).encode())
        log.error(
            "CONFLICT: chunk %s was uploaded again with different bytes (md5 %s, folded as %s); not folded again, kept aside as s3://%s/%s",
            index,
            digest,
            was,
            settings.bucket,
            conflict_key(settings, index, digest, "csv"),
        )
    return sorted(conflicts)


def finish_moves(store: ObjectStore, settings: PipelineSettings, digests: FoldedDigests, uploaded: dict[int, tuple[str, str]]) -> None:
    """Remove from the chunks prefix the quarantined chunks that are still there, as they were
    folded: a run died between committing the state and removing them (``uploaded``:
    ``folded_chunks``; other bytes uploaded since are a conflict, kept aside there)."""
    left = [
        key
        for index, (key, etag) in sorted(uploaded.items())
        if index in digests.quarantined and etag in (digests.md5.get(str(index)), digests.etag.get(str(index)))
    ]
    if left:
        _remove_originals(store, left)


def _remove_originals(store: ObjectStore, keys: list[str]) -> None:
    """The second half of a quarantine move, once the state that folded the chunks as empty is
    committed. A store that refuses the removal (an IAM policy without it) leaves the original
    where it is: already folded, it is never taken again; the log says so."""
    if not keys:
        return
    try:
        store.delete(keys)
    except Exception as exc:  # any refusal: the data is safe either way
        log.error("quarantined chunks copied aside but not removed from the chunks prefix (%s): %s", exc, ", ".join(keys))


@dataclass(frozen=True)
class AcceptedChunk:
    table: pa.Table
    """The rows to fold."""
    rows_set_aside: int
    quarantined: bool
    """Copied to the quarantine prefix, to be removed from the chunks prefix once the state is committed."""


def accept_chunk(
    store: ObjectStore, settings: PipelineSettings, index: int, data: bytes, expected_rows: int | None = None
) -> AcceptedChunk:
    """The rows of chunk ``index`` to fold, and how many were set aside, by the bad-chunk policy.

    - quarantine: a chunk with any problem is moved to the quarantine prefix with a JSON report
      of every bad line and field, and folded as empty, so the stream goes on; the caller removes
      the original once the state is committed;
    - skip_rows: its good rows are folded, the bad ones reported (a file-level problem such as a
      bad header leaves no good row, and the chunk is quarantined);
    - halt: the run fails with the parser's error (file, line, field).

    ``expected_rows``: the chunk's rows by the stream's manifest; blank lines at the end of the
    chunk, which a file may end with but a chunk's rows may not, are then problems too.
    """
    source = _uri(settings, chunk_key(settings, index))
    checked = check_csv(data, source, schema.TRANSACTIONS, columns=FOLDED_COLUMNS, expected_rows=expected_rows)
    if not checked.problems:
        return AcceptedChunk(checked.table, 0, quarantined=False)
    if settings.bad_chunk_policy == "halt":
        raise InputError(source, checked.problems)
    keep_rows = settings.bad_chunk_policy == "skip_rows" and checked.table.num_rows > 0
    set_aside = checked.rows_read - checked.table.num_rows if keep_rows else checked.rows_read
    report = {
        "chunk": index,
        "source": source,
        "policy": settings.bad_chunk_policy,
        "action": "bad rows skipped, good rows folded" if keep_rows else "chunk quarantined, no row folded",
        "rows_read": checked.rows_read,
        "rows_folded": checked.table.num_rows if keep_rows else 0,
        "problems": [{"line": p.line, "field": p.field, "message": p.message} for p in checked.problems],
    }
    store.put(quarantine_report_key(settings, index), json.dumps(report, indent=1).encode())
    if not keep_rows:
        store.put(quarantined_chunk_key(settings, index), data)
    first = checked.problems[0]
    log.error(
        "chunk %s: %s problem(s), first at line %s field %s: %s; %s (report: s3://%s/%s)",
        index,
        len(checked.problems),
        first.line,
        first.field,
        first.message,
        report["action"],
        settings.bucket,
        quarantine_report_key(settings, index),
    )
    if keep_rows:
        return AcceptedChunk(checked.table, set_aside, quarantined=False)
    return AcceptedChunk(columns.empty(schema.TRANSACTIONS), set_aside, quarantined=True)


def summarise(report: DetectionReport, metrics: list[ChunkMetrics], final_files: list[str]) -> None:
    for chunk in metrics:
        report.chunks.append(chunk.index)
        report.rows += chunk.rows
        report.files += chunk.files
        for pattern, n in chunk.new_detections.items():
            report.new_detections[pattern] += n
    report.files += final_files
    if metrics:
        lags = [m.lag_seconds for m in metrics]
        report.lag_seconds = {"min": min(lags), "median": statistics.median(lags), "max": max(lags)}


def _uri(settings: PipelineSettings, key: str) -> str:
    return f"s3://{settings.bucket}/{key}"
