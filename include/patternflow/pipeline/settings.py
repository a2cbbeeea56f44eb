"""Pipeline settings: where the stream lives on S3, where its source files are, and its pace.

One place for every setting of the two DAGs, with documented defaults. A value comes from, in
order of precedence:

1. the DAG run's trigger-form Param of the same name (when it is set, i.e. not null);
2. the key of the same name in the Airflow Variable ``patternflow_settings``, a JSON object
   (e.g. ``{"bucket": "my-bank", "max_rows_per_run": 500000}``): one Variable, so that a task
   reads its settings with one lookup rather than one per setting;
3. the environment variable ``PATTERNFLOW_<NAME>`` (e.g. ``PATTERNFLOW_BUCKET``);
4. the default below.

Everything is validated before use: a bad bucket name, a prefix that climbs out of the bucket
with ``..`` or overlaps another prefix, a chunk size below 1 all stop the run with a message
that names the setting and where its value came from.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any

from patternflow.engine.config import DetectionConfig
from patternflow.errors import PatternflowError

VARIABLE = "patternflow_settings"
ENVIRONMENT_PREFIX = "PATTERNFLOW_"


class SettingsError(PatternflowError):
    """A setting has a value the pipeline cannot use."""


PREFIXES = ("chunks_prefix", "reference_prefix", "state_prefix", "output_prefix", "quarantine_prefix")
BAD_CHUNK_POLICIES = ("quarantine", "skip_rows", "halt")


@dataclass(frozen=True)
class PipelineSettings:
    bucket: str = "patternflow"
    """S3 bucket that holds the chunks, the reference data, the state and the detections."""
    chunks_prefix: str = "transaction_chunks/"
    """Where the producer uploads chunk_<i>.csv and the stream's markers."""
    reference_prefix: str = "reference/"
    """Where the producer uploads CustomerImportance.csv at stream start."""
    state_prefix: str = "state/"
    """Where the detector keeps its versioned state and per-chunk metrics."""
    output_prefix: str = "output_detections/"
    """Where the detector writes detection_<i>.csv."""
    transactions: str = "data/transactions.csv"
    """The transactions file to stream: a local path (relative to the worker's directory) or an s3:// URI."""
    importance: str = "data/CustomerImportance.csv"
    """The CustomerImportance file: a local path or an s3:// URI."""
    chunk_size: int = 10_000
    """Transactions per chunk."""
    tick_seconds: float = 1.0
    """Seconds between two chunks of a paced stream (also the producer DAG's schedule)."""
    max_rows_per_run: int = 250_000
    """Most rows one detection run takes of the chunks waiting (never less than one chunk); the rest wait for the next run."""
    max_chunks_per_run: int = 0
    """Most chunks one detection run takes, 0 for no bound by count (max_rows_per_run still bounds a run)."""
    keep_running_seconds: float = 300.0
    """For how long a detection task goes on with the next run, on the state it holds, while chunks keep landing; 0: one run a task."""
    idle_seconds: float = 5.0
    """How long a detection task that keeps running waits for the next chunk before it ends (and the sensor waits instead)."""
    partitions: int = 1
    """Merchant partitions of the detector's state, each folded by a task of its own; fixed when a stream starts."""
    state_snapshot_every: int = 200
    """Every this many state commits one writes the whole state; the others write only what changed (deltas)."""
    state_snapshot_bytes: int = 64 * 1024 * 1024
    """A state commit writes the whole state once the deltas since the last whole one pass this many bytes."""
    poke_interval_seconds: float = 0.5
    """How often the deferred sensor looks for the next chunk."""
    quarantine_prefix: str = "quarantine/"
    """Where malformed chunks and their reports are moved."""
    bad_chunk_policy: str = "quarantine"
    """A malformed chunk: quarantine (move it aside with a report, go on), skip_rows (fold its good rows, report the bad), or halt."""
    gap_timeout_seconds: float = 300.0
    """How long a missing chunk may hold up later ones before the detection run fails naming it."""
    aws_conn_id: str = "aws_default"
    """Airflow connection for S3: endpoint, region and credentials come from it."""

    def __post_init__(self) -> None:
        for name in PREFIXES:
            object.__setattr__(self, name, normalise_prefix(getattr(self, name), name))
        validate_bucket(self.bucket)
        prefixes = {name: getattr(self, name) for name in PREFIXES}
        for a, pa_ in prefixes.items():
            for b, pb in prefixes.items():
                if a < b and (pa_.startswith(pb) or pb.startswith(pa_)):
                    raise SettingsError(f"{a} {pa_!r} and {b} {pb!r} overlap: each kind of object needs a prefix of its own")
        if self.chunk_size < 1:
            raise SettingsError(f"chunk_size must be at least 1, got {self.chunk_size}")
        for name in ("max_rows_per_run", "state_snapshot_every", "partitions"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_chunks_per_run", "state_snapshot_bytes"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("keep_running_seconds", "idle_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 86_400):
                raise SettingsError(f"{name} must be 0 or more and at most 86400 seconds, got {value}")
        for name in ("tick_seconds", "poke_interval_seconds", "gap_timeout_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= 86_400):
                raise SettingsError(f"{name} must be more than 0 and at most 86400 seconds, got {value}")
        if self.bad_chunk_policy not in BAD_CHUNK_POLICIES:
            raise SettingsError(f"bad_chunk_policy must be one of {', '.join(BAD_CHUNK_POLICIES)}, got {self.bad_chunk_policy!r}")
        for name in ("transactions", "importance"):
            if not getattr(self, name):
                raise SettingsError(f"{name} must name a file")
            if getattr(self, name).startswith("s3://"):
                split_s3_uri(getattr(self, name))
        if not self.aws_conn_id:
            raise SettingsError("aws_conn_id must not be empty")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def detection_config(
        variables: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, *, with_chunk_size: bool = False
    ) -> DetectionConfig:
        """The pattern thresholds, from the keys of Variable ``patternflow_settings`` or ``PATTERNFLOW_<NAME>``.

        In the pipeline the chunk size is the stream's (its manifest says it); ``with_chunk_size``
        reads it from the same places too, for a stream cut here (``patternflow replay``). The rest
        default to the contract.
        """
        environ = os.environ if environ is None else environ
        _check_keys(variables or {})
        values = {}
        for field in fields(DetectionConfig):
            origin, raw = _lookup(field.name, {}, variables or {}, environ)
            if origin is not None and (with_chunk_size or field.name != "chunk_size"):
                values[field.name] = (origin, raw, field.type)
        try:
            return DetectionConfig(**{name: _convert(raw, kind) for name, (_, raw, kind) in values.items()})
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise SettingsError(f"detection settings: {exc}") from None

    @classmethod
    def resolve(
        cls,
        params: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PipelineSettings:
        """Settings from Params, then Variables, then the environment, then the defaults."""
        environ = os.environ if environ is None else environ
        _check_keys(variables or {})
        values: dict[str, Any] = {}
        for field in fields(cls):
            origin, raw = _lookup(field.name, params or {}, variables or {}, environ)
            if origin is None:
                continue
            try:
                values[field.name] = _convert(raw, field.type)
            except (TypeError, ValueError):
                raise SettingsError(f"{field.name} from {origin}: {raw!r} is not a valid {field.type}") from None
        try:
            return cls(**values)
        except SettingsError as exc:
            raise SettingsError(f"{exc} (settings from Params, Variable {VARIABLE}, environment PATTERNFLOW_*)") from None


@cache
def descriptions() -> dict[str, str]:
    """Each setting's docstring (the string literal after the field), for the trigger form."""
    tree = ast.parse(inspect.getsource(PipelineSettings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = str(following.value.value)  # type: ignore[attr-defined]
    return docs


def _check_keys(variables: Mapping[str, Any]) -> None:
    if not isinstance(variables, Mapping):
        raise SettingsError(f"Variable {VARIABLE} must be a JSON object of settings, got {type(variables).__name__}")
    known = {f.name for f in fields(PipelineSettings)} | {f.name for f in fields(DetectionConfig)}
    unknown = sorted(set(variables) - known)
    if unknown:
        raise SettingsError(f"Variable {VARIABLE} has unknown settings {unknown}; known: {sorted(known)}")


def _lookup(name: str, params: Mapping[str, Any], variables: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str | None, Any]:
    if params.get(name) not in (None, ""):
        return f"Param {name}", params[name]
    if variables.get(name) not in (None, ""):
        return f"Variable {VARIABLE} key {name}", variables[name]
    env_name = ENVIRONMENT_PREFIX + name.upper()
    if environ.get(env_name, "") != "":
        return f"environment {env_name}", environ[env_name]
    return None, None


def _convert(raw: Any, kind: Any) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "int":
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(raw)
        return int(str(raw).replace("_", "")) if not isinstance(raw, int | float) else int(raw)
    if kind == "float":
        return float(raw)
    return str(raw).strip()


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def validate_bucket(name: str) -> None:
    """The S3 bucket naming rules that matter here (3-63 chars, lowercase, digits, dots, hyphens)."""
    if not _BUCKET.match(name) or ".." in name or re.match(r"^\d+\.\d+\.\d+\.\d+$", name):
        raise SettingsError(
            f"bucket {name!r} is not a valid S3 bucket name: 3 to 63 characters, lowercase letters, digits, "
            "dots and hyphens, starting and ending with a letter or digit"
        )


def normalise_prefix(prefix: str, name: str = "prefix") -> str:
    """``a/b`` -> ``a/b/``; refuses absolute prefixes, empty ones and ``..`` or ``.`` segments."""
    prefix = prefix.strip()
    parts = prefix.strip("/").split("/")
    if not prefix.strip("/") or prefix.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise SettingsError(f"{name} {prefix!r} must be a relative key prefix such as 'transaction_chunks/' (no '..', '.', '//')")
    if any(ord(c) < 32 for c in prefix) or "\\" in prefix:
        raise SettingsError(f"{name} {prefix!r} contains control characters or backslashes")
    return "/".join(parts) + "/"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    validate_bucket(bucket)
    if not key or key.endswith("/"):
        raise SettingsError(f"{uri!r} must name an object: s3://bucket/path/to/file.csv")
    return bucket, key
