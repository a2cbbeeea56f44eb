"""What the DAGs need from Airflow: settings from Params and Variables, S3 through the Amazon
provider's ``aws_default`` connection, the trigger-form Params, and the sensor that waits for
whatever the stream needs next.

Everything else (chunking, detection, state) is in the Airflow-free core; the DAG files only
wire these together. Airflow imports are made inside functions so that importing a DAG file
stays cheap for the DAG processor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import Asset, Param

from patternflow.engine.config import DetectionConfig
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import VARIABLE, PipelineSettings, descriptions

OWNER = "patternflow"
TAGS = ["patternflow", "banksim", "s3"]
DEFAULT_ARGS = {
    "owner": OWNER,
    # 2 s doubling to at most 30 s (Airflow adds up to as much again): about a minute of waits
    # in all, so that a task outlives an S3 outage of half a minute.
    "retries": 5,
    "retry_delay": timedelta(seconds=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(seconds=30),
}
PACING = ("auto", "tick", "fast")


def _variables() -> dict[str, Any]:
    """The Variable ``patternflow_settings`` (a JSON object), or nothing when it is not set."""
    from airflow.sdk import Variable

    from patternflow.pipeline.settings import SettingsError

    try:
        return Variable.get(VARIABLE, default=None, deserialize_json=True) or {}
    except ValueError as exc:
        raise SettingsError(f"Variable {VARIABLE} is not valid JSON: {exc}") from None


@contextmanager
def failing_at_once_on_lasting_errors() -> Iterator[None]:
    """Errors another try would meet again fail the task at once, skipping its retries: bad
    settings, bad input (CustomerImportance, a chunk under the ``halt`` policy, an empty source),
    a missing source file, a stream started under other settings. S3 errors and races are
    retried as usual."""
    from airflow.sdk.exceptions import AirflowFailException

    from patternflow.engine.state import StateError
    from patternflow.errors import InputError
    from patternflow.pipeline.producer import StreamError
    from patternflow.pipeline.settings import SettingsError
    from patternflow.pipeline.sources import SourceError

    try:
        yield
    except (SettingsError, InputError, StreamError, SourceError, StateError) as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def settings_for(params: Mapping[str, Any] | None = None) -> PipelineSettings:
    """This run's settings: its Params, then Variable ``patternflow_settings``, then ``PATTERNFLOW_*``."""
    return PipelineSettings.resolve(params, _variables())


@contextmanager
def detection_run(parsed: PipelineSettings) -> Iterator[tuple[Any, PipelineSettings, DetectionConfig]]:
    """A detection task's context, settings and thresholds, lasting errors failing it at once.

    The DAG's shape follows ``partitions`` as the file was parsed (``parsed``: the environment);
    a run whose settings (the Variable, say) ask for another number fails, naming the setting."""
    from airflow.sdk import get_current_context

    from patternflow.pipeline.settings import SettingsError

    context = get_current_context()
    return_freed_memory()
    with failing_at_once_on_lasting_errors():
        settings, thresholds = detection_settings_for(context["params"])
        if settings.partitions != parsed.partitions:
            raise SettingsError(
                f"partitions is {settings.partitions} for this run but the detection DAG was parsed with {parsed.partitions}: "
                "set PATTERNFLOW_PARTITIONS in the environment of every Airflow component (the DAG's shape follows it)"
            )
        yield context, settings, thresholds


def return_freed_memory() -> None:
    """Arrow allocates through the C library's allocator in this process rather than mimalloc.

    A detection task reads S3 on several threads and allocates per chunk; mimalloc keeps pages
    freed on each thread for reuse, and the task's peak RSS with it. Measured at ten times BankSim,
    one process folding the whole stream from moto's S3 server: peak RSS 291-301 MB with mimalloc,
    239-268 MB with the system allocator; ``patternflow replay`` of the same files took 9.2-11.5 s
    and 10.8-10.9 s (no difference beyond the machine's noise)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def detection_settings_for(params: Mapping[str, Any] | None = None) -> tuple[PipelineSettings, DetectionConfig]:
    """The settings and the pattern thresholds, from one Variable lookup."""
    variables = _variables()
    return PipelineSettings.resolve(params, variables), PipelineSettings.detection_config(variables)


def chunks_asset(settings: PipelineSettings) -> Asset:
    """``s3://<bucket>/<chunks_prefix>``: what the producer writes and the detector reads.

    Assets are declared when a DAG file is parsed, so they name the deployment's stream (the
    environment's settings and the defaults), not one a trigger form points elsewhere. They only
    draw the lineage in the UI's Assets view: the sensor, not the asset, schedules detection."""
    return Asset(f"s3://{settings.bucket}/{settings.chunks_prefix}")


def detections_asset(settings: PipelineSettings) -> Asset:
    """``s3://<bucket>/<output_prefix>``: the 50-row detection files the detector writes."""
    return Asset(f"s3://{settings.bucket}/{settings.output_prefix}")


def describe_asset_event(context: Mapping[str, Any], asset: Asset, extra: dict[str, Any]) -> None:
    """What this run added to ``asset``, shown with its event in the Assets view."""
    context["outlet_events"][asset].extra = extra


def s3_client(settings: PipelineSettings) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()


def s3_store(settings: PipelineSettings) -> S3Store:
    return S3Store(s3_client(settings), settings.bucket)


def setting_params(*names: str) -> dict[str, Param]:
    """Trigger-form fields for settings: empty means "use the Variable, environment or default"."""
    defaults = PipelineSettings()
    params = {}
    for name in names:
        default = getattr(defaults, name)
        kind = {int: "integer", float: "number"}.get(type(default), "string")
        params[name] = Param(
            None,
            type=["null", kind],
            title=name.replace("_", " "),
            description=(
                f"{descriptions()[name]} Empty: key {name} of Variable {VARIABLE}, else PATTERNFLOW_{name.upper()}, else {default}."
            ),
        )
    return params


def pacing_param() -> Param:
    return Param(
        "auto",
        enum=list(PACING),
        title="pacing",
        description="tick: upload the chunks that are due (one per tick since the stream started); fast: upload every "
        "remaining chunk now; auto: tick for scheduled runs, fast for manual runs, backfills and `airflow dags test`.",
    )


def is_fast(pacing: str, run_type: str | None) -> bool:
    if pacing not in PACING:
        raise ValueError(f"pacing must be one of {', '.join(PACING)}, got {pacing!r}")
    return pacing == "fast" or (pacing == "auto" and run_type != "scheduled")


class NextChunkSensor(S3KeySensor):
    """An ``S3KeySensor`` whose key is decided when it runs: the next chunk the state expects, or
    the end-of-stream marker once every chunk is folded.

    It runs deferred (the triggerer polls S3; no worker slot is held while waiting). On a
    finished stream there is nothing to wait for: a manual run is skipped, and the continuous
    schedule idles, deferred on a timer, until the stream is reset and a new one begins.

    Chunks that arrive out of order wait for the gap to close; a gap open longer than
    ``gap_timeout_seconds`` fails the run with a message naming the missing chunk. The wait is
    deferred in slices of at most that long, each ending with a fresh look at the gap.
    """

    def __init__(self, *, idle_seconds: float = 30.0, **kwargs: Any) -> None:
        settings = PipelineSettings.resolve()
        super().__init__(
            bucket_key="(the next expected chunk, decided at run time)",
            bucket_name=settings.bucket,
            aws_conn_id=settings.aws_conn_id,
            deferrable=True,
            poke_interval=settings.poke_interval_seconds,
            **kwargs,
        )
        self.idle_seconds = idle_seconds

    def execute(self, context: Any, event: Any = None) -> None:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from patternflow.pipeline.status import expected_key, open_gap, read_progress

        with failing_at_once_on_lasting_errors():
            settings = settings_for(context["params"])
            self.bucket_name = settings.bucket
            self.aws_conn_id = settings.aws_conn_id
            self.poke_interval = settings.poke_interval_seconds
            store = s3_store(settings)
            progress = read_progress(store, settings)  # read once: both questions below are about it
            key = expected_key(store, settings, progress)
        if key is None:
            if context["dag_run"].run_type != "scheduled":
                raise AirflowSkipException("the stream is finished: nothing to wait for (reset it to start another)")
            self.log.info("the stream is finished; idling %s s before looking for a new stream", self.idle_seconds)
            self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.idle_seconds)), method_name="execute")
        self.bucket_key = key
        self.timeout = settings.gap_timeout_seconds
        gap = open_gap(store, settings, progress)
        if gap is not None:
            now = time.time()
            if now - gap.since >= settings.gap_timeout_seconds:
                raise AirflowFailException(f"{gap.describe(now)}; gave up after gap_timeout_seconds={settings.gap_timeout_seconds:g}")
            self.timeout = settings.gap_timeout_seconds - (now - gap.since)
            self.log.warning("%s; waiting at most %.0f s more", gap.describe(now), self.timeout)
        self.log.info("waiting for s3://%s/%s", settings.bucket, key)
        super().execute(context)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """A wait that timed out is looked at again: it fails on an old gap, or waits once more."""
        from airflow.sdk.exceptions import AirflowSensorTimeout

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout:
            return self.execute(context)


_DASHBOARD_STORES: dict[PipelineSettings, tuple[float, S3Store]] = {}
DASHBOARD_CLIENT_SECONDS = 60.0
"""How long the dashboard reuses an S3 client before asking the connection again."""


def dashboard_source() -> tuple[S3Store, PipelineSettings]:
    """The store and settings of the "Pattern detections" page: the same as the DAGs' (Variable
    ``patternflow_settings``, ``PATTERNFLOW_*``, connection ``aws_conn_id``), read at each request;
    the S3 client is reused for a minute rather than made again every few seconds."""
    settings = settings_for()
    made, store = _DASHBOARD_STORES.get(settings, (0.0, None))
    if store is None or time.monotonic() - made > DASHBOARD_CLIENT_SECONDS:
        store = s3_store(settings)
        _DASHBOARD_STORES[settings] = (time.monotonic(), store)
    return store, settings
