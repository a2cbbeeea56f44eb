"""Mechanism X: every tick, the next chunk of transactions.csv goes up to S3.

    upload_due_chunks  ->  s3://<bucket>/transaction_chunks/chunk_<i>.csv  (outlet Asset)

A stream starts on the first run (CustomerImportance goes to the reference prefix, the stream
manifest records the source and every chunk's byte range); each later run uploads the chunks
that are due, so missed ticks are caught up and a re-run writes the same bytes to the same keys.
After the last chunk the end-of-stream marker is written and runs have nothing left to do.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task

from patternflow.pipeline.orchestration import DEFAULT_ARGS, TAGS, chunks_asset, pacing_param, setting_params, settings_for
from patternflow.pipeline.settings import PipelineSettings

DEPLOYMENT = PipelineSettings.resolve()
TICK = timedelta(seconds=DEPLOYMENT.tick_seconds)
CHUNKS = chunks_asset(DEPLOYMENT)


@dag(
    dag_id="transaction_producer",
    schedule=TICK,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    params={
        "pacing": pacing_param(),
        **setting_params("bucket", "chunks_prefix", "reference_prefix", "transactions", "importance", "chunk_size", "tick_seconds"),
    },
    doc_md=__doc__,
)
def transaction_producer():
    @task(outlets=[CHUNKS])
    def upload_due_chunks() -> dict:
        """Upload every chunk that is due (all remaining ones in fast mode); returns what was done."""
        import time

        from patternflow.pipeline.orchestration import describe_asset_event, failing_at_once_on_lasting_errors, is_fast, s3_client
        from patternflow.pipeline.producer import produce
        from patternflow.pipeline.s3 import S3Store
        from patternflow.pipeline.sources import source_opener

        context = get_current_context()
        with failing_at_once_on_lasting_errors():
            settings = settings_for(context["params"])
            client = s3_client(settings)
            fast = is_fast(context["params"]["pacing"], context["dag_run"].run_type)
            report = produce(S3Store(client, settings.bucket), settings, source_opener(lambda: client), time.time, fast)
        describe_asset_event(context, CHUNKS, {"chunks": report.uploaded, "rows": report.rows_uploaded})
        return report.to_json()

    upload_due_chunks()


transaction_producer()
