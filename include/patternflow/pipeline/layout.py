"""Where a stream's objects live in its bucket: one place for every key name.

Light on purpose (no data libraries), so that the sensor and the progress display can use it
without importing the engine.
"""

from __future__ import annotations

from patternflow.pipeline.settings import PipelineSettings

STREAM_MANIFEST = "_stream.json"
"""Written once when the producer starts a stream: its source, size, chunk offsets and pace."""
END_OF_STREAM = "_end_of_stream.json"
"""Written after the last chunk: the chunk and row counts."""
IMPORTANCE = "CustomerImportance.csv"
WEIGHT_RANKS = "weight_ranks.parquet"
PATTERNS = ("PatId1", "PatId2", "PatId3")


def chunk_key(settings: PipelineSettings, index: int) -> str:
    return f"{settings.chunks_prefix}chunk_{index}.csv"


def manifest_key(settings: PipelineSettings) -> str:
    return settings.chunks_prefix + STREAM_MANIFEST


def end_of_stream_key(settings: PipelineSettings) -> str:
    return settings.chunks_prefix + END_OF_STREAM


def importance_key(settings: PipelineSettings) -> str:
    return settings.reference_prefix + IMPORTANCE


def weight_ranks_key(settings: PipelineSettings) -> str:
    """CustomerImportance's weight ranks, one row a pair: what the detector starts a stream from."""
    return settings.reference_prefix + WEIGHT_RANKS


def current_state_key(settings: PipelineSettings) -> str:
    return f"{settings.state_prefix}CURRENT"


def metrics_prefix(settings: PipelineSettings) -> str:
    return f"{settings.state_prefix}metrics/"


def metrics_key(settings: PipelineSettings, first_chunk: int) -> str:
    return f"{metrics_prefix(settings)}run_{first_chunk:08d}.json"


def quarantined_chunk_key(settings: PipelineSettings, index: int) -> str:
    """Where a malformed chunk is moved; the producer counts it as uploaded."""
    return f"{settings.quarantine_prefix}chunk_{index}.csv"


def quarantine_report_key(settings: PipelineSettings, index: int) -> str:
    """The JSON report naming every bad line and field of chunk ``index``."""
    return f"{settings.quarantine_prefix}chunk_{index}.json"


def digests_key(settings: PipelineSettings) -> str:
    """MD5 of every chunk as it was folded, to tell a harmless re-upload from a conflicting one."""
    return f"{settings.state_prefix}chunk_digests.json"


def conflict_key(settings: PipelineSettings, index: int, digest: str, extension: str) -> str:
    return f"{settings.quarantine_prefix}conflicts/chunk_{index}.{digest}.{extension}"


def partitioning_key(settings: PipelineSettings) -> str:
    """The stream's number of merchant partitions, recorded when its detection starts."""
    return f"{settings.state_prefix}partitioning.json"


def partition_state_prefix(settings: PipelineSettings, partition: int) -> str:
    """The versioned state of one merchant partition (the stream's own state stays at the state prefix)."""
    return f"{settings.state_prefix}partitions/{partition}/"


def staged_prefix(settings: PipelineSettings, partition: int) -> str:
    return f"{settings.state_prefix}staged/partition_{partition}/"


def staged_key(settings: PipelineSettings, partition: int, first_chunk: int, last_chunk: int) -> str:
    """One partition run's detections, chunk by chunk, waiting to be merged into files: named for
    the chunks it covers, so that no run's object, even a stalled run's, hides another's."""
    return f"{staged_prefix(settings, partition)}chunks_{first_chunk:010d}_{last_chunk:010d}.parquet"


def staged_range(key: str) -> tuple[int, int]:
    """The first and last chunk of a ``staged_key``."""
    first, last = key.rsplit("/", 1)[1].removeprefix("chunks_").removesuffix(".parquet").split("_")
    return int(first), int(last)
