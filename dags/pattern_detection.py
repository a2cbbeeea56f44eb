"""Mechanism Y: as soon as a chunk lands, fold it into the state and write new detections.

    wait_for_next_chunk (S3KeySensor, deferred)  ->  detect_patterns

With merchant partitions (PATTERNFLOW_PARTITIONS=N > 1, read when this file is parsed):

    wait_for_next_chunk  ->  detect_partition (mapped: one task a partition)  ->  write_detection_files

Each partition task folds its merchants' rows and commits its own state; the last task merges
their detections chunk by chunk in the contract's order and writes the files. The tasks read the
Asset s3://<bucket>/transaction_chunks/ and write the Asset s3://<bucket>/output_detections/, so
the Assets view shows the stream's lineage.

Runs back to back (@continuous, one at a time). The sensor waits in the triggerer for the next
chunk the state expects, or for the end-of-stream marker; the detection task then takes every
consecutive chunk already there (up to max_rows_per_run rows) and commits; while chunks keep
landing (none for idle_seconds ends it) it goes on with the next run at once, for up to
keep_running_seconds, so the detector keeps up with the producer despite Airflow's cost of a task. Detection files go to
s3://<bucket>/output_detections/detection_<i>.csv, 50 rows each, the state to s3://<bucket>/state/.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from patternflow.pipeline.orchestration import DEFAULT_ARGS, TAGS, NextChunkSensor, chunks_asset, detections_asset, setting_params
from patternflow.pipeline.settings import PREFIXES, PipelineSettings

DEPLOYMENT = PipelineSettings.resolve()
CHUNKS = chunks_asset(DEPLOYMENT)
DETECTIONS = detections_asset(DEPLOYMENT)


@task(inlets=[CHUNKS], outlets=[DETECTIONS])
def detect_patterns() -> dict:
    """Fold the waiting chunks, write full detection files, commit; returns the run's figures."""
    from patternflow.pipeline.detector import detect
    from patternflow.pipeline.orchestration import describe_asset_event, detection_run, s3_store

    with detection_run(DEPLOYMENT) as (context, settings, thresholds):
        report = detect(s3_store(settings), settings, thresholds, keep_running_seconds=settings.keep_running_seconds)
    describe_asset_event(context, DETECTIONS, report.lineage())
    return report.to_json()


@task(inlets=[CHUNKS], map_index_template="partition {{ partition }}")
def detect_partition(partition: int) -> dict:
    """Fold one partition's merchants' rows of the waiting chunks, stage its detections, commit its state."""
    from patternflow.pipeline.orchestration import detection_run, s3_store
    from patternflow.pipeline.partitioned import detect_partition as fold_partition

    with detection_run(DEPLOYMENT) as (_, settings, thresholds):
        return fold_partition(s3_store(settings), settings, partition, thresholds).to_json()


@task(outlets=[DETECTIONS])
def write_detection_files() -> dict:
    """Merge the partitions' detections chunk by chunk, write full detection files, commit the stream."""
    from patternflow.pipeline.orchestration import describe_asset_event, detection_run, s3_store
    from patternflow.pipeline.partitioned import write_detection_files as merge

    with detection_run(DEPLOYMENT) as (context, settings, thresholds):
        report = merge(s3_store(settings), settings, thresholds)
    describe_asset_event(context, DETECTIONS, report.lineage())
    return report.to_json()


@dag(
    dag_id="pattern_detection",
    schedule="@continuous",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    params=setting_params("bucket", *PREFIXES, "max_rows_per_run", "max_chunks_per_run", "keep_running_seconds", "idle_seconds"),
    doc_md=__doc__,
)
def pattern_detection():
    wait = NextChunkSensor(task_id="wait_for_next_chunk")
    if DEPLOYMENT.partitions == 1:
        wait >> detect_patterns()
    else:
        wait >> detect_partition.expand(partition=list(range(DEPLOYMENT.partitions))) >> write_detection_files()


pattern_detection()
