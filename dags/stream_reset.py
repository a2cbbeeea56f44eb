"""Start over: remove one stream's chunks, reference data, state, detection files and quarantine.

    reset_stream

Only the five prefixes of the configured bucket are touched; nothing else in the bucket is.
Manual only. Pause the producer first if it should not start a new stream right away.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from patternflow.pipeline.orchestration import DEFAULT_ARGS, TAGS, setting_params, settings_for
from patternflow.pipeline.settings import PREFIXES


@dag(
    dag_id="stream_reset",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    params=setting_params("bucket", *PREFIXES),
    doc_md=__doc__,
)
def stream_reset():
    @task
    def reset_stream() -> dict:
        """Delete the stream's objects; returns how many went from each prefix."""
        from patternflow.pipeline.orchestration import failing_at_once_on_lasting_errors, s3_store
        from patternflow.pipeline.producer import reset_stream

        with failing_at_once_on_lasting_errors():
            settings = settings_for(get_current_context()["params"])
            return reset_stream(s3_store(settings), settings)

    reset_stream()


stream_reset()
