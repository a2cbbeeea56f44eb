"""Mechanism Y: as soon as a chunk lands, fold it into the state and write new detections.

    wait_for_next_chunk (S3KeySensor, deferred)  ->  detect_patterns

detect_patterns reads the Asset s3://<bucket>/transaction_chunks/ and writes the Asset
s3://<bucket>/output_detections/, so the Assets view shows the stream's lineage.

Runs back to back (@continuous, one at a time). The sensor waits in the triggerer for the next
chunk the state expects, or for the end-of-stream marker; the detection task then takes every
consecutive chunk already there (up to max_rows_per_run rows), so the detector keeps up with
the producer despite Airflow's per-run overhead. Detection files go to
s3://<bucket>/output_detections/detection_<i>.csv, 50 rows each, the state to s3://<bucket>/state/.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from patternflow.pipeline.orchestration import DEFAULT_ARGS, TAGS, NextChunkSensor, chunks_asset, detections_asset, setting_params
from patternflow.pipeline.settings import PREFIXES, PipelineSettings

DEPLOYMENT = PipelineSettings.resolve()
CHUNKS = chunks_asset(DEPLOYMENT)
DETECTIONS = detections_asset(DEPLOYMENT)


@dag(
    dag_id="pattern_detection",
    schedule="@continuous",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    params=setting_params("bucket", *PREFIXES, "max_rows_per_run", "max_chunks_per_run"),
    doc_md=__doc__,
)
def pattern_detection():
    wait = NextChunkSensor(task_id="wait_for_next_chunk")

    @task(inlets=[CHUNKS], outlets=[DETECTIONS])
    def detect_patterns() -> dict:
        """Fold the waiting chunks, write full detection files, commit; returns the run's figures."""
        from patternflow.pipeline.detector import detect
        from patternflow.pipeline.orchestration import (
            describe_asset_event,
            detection_settings_for,
            failing_at_once_on_lasting_errors,
            s3_store,
        )

        context = get_current_context()
        with failing_at_once_on_lasting_errors():
            settings, thresholds = detection_settings_for(context["params"])
            report = detect(s3_store(settings), settings, thresholds)
        describe_asset_event(context, DETECTIONS, {"chunks": report.chunks, "files": report.files, "new_detections": report.new_detections})
        return report.to_json()

    wait >> detect_patterns()


pattern_detection()
