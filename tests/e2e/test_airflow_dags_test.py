"""End to end with ``airflow dags test``: the real DAGs, the S3 server on 127.0.0.1, one process a run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.status import read_chunk_metrics, read_progress
from patternflow.replay import replay
from tests.airflow_runs import AIRFLOW, airflow, airflow_environment, asset_events
from tests.helpers import file_rows, lively_config, read_files

CHUNK = 5_000

pytestmark = pytest.mark.slow


@pytest.fixture
def airflow_env(tmp_path: Path, s3_endpoint, bucket, small_banksim) -> dict[str, str]:
    env = airflow_environment(tmp_path / "airflow", s3_endpoint, bucket, small_banksim, CHUNK, {"max_chunks_per_run": 5})
    airflow(env, "db", "migrate")
    return env


def test_dags_test_streams_the_file_and_detects_what_replay_detects(airflow_env, s3_client, bucket, small_banksim, tmp_path):
    settings = PipelineSettings(bucket=bucket)
    store = S3Store(s3_client, bucket)

    log = airflow(airflow_env, "dags", "test", "transaction_producer")
    assert "'uploaded': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]" in log
    assert read_progress(store, settings, count_uploads=True).end_of_stream_marker

    # one detection task: a run of at most 5 chunks, then the next at once while chunks are waiting
    log = airflow(airflow_env, "dags", "test", "pattern_detection")
    assert "Returned value was: {'chunks': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]" in log
    assert read_progress(store, settings).finished
    records = read_chunk_metrics(store, settings)
    runs = sorted({record["committed_at"] for record in records})
    assert [sum(record["committed_at"] == run for record in records) for run in runs] == [5, 5, 2]

    replay(small_banksim.transactions, small_banksim.importance, tmp_path / "replay", lively_config(CHUNK))
    expected = {name: [row[2:] for row in file_rows(text)] for name, text in read_files(tmp_path / "replay").items()}
    got = {k.rsplit("/", 1)[1]: [row[2:] for row in file_rows(store.get(k).decode())] for k in store.list(settings.output_prefix)}
    assert got == expected
    assert len(got) == 3

    events = asset_events(airflow_env)
    chunks_uri, detections_uri = f"s3://{bucket}/transaction_chunks", f"s3://{bucket}/output_detections"
    uploads = [e for e in events if e["uri"] == chunks_uri]
    assert [(e["dag_id"], e["task_id"]) for e in uploads] == [("transaction_producer", "upload_due_chunks")]
    assert uploads[0]["extra"]["chunks"] == list(range(12))
    detections = [e for e in events if e["uri"] == detections_uri]
    assert {(e["dag_id"], e["task_id"]) for e in detections} == {("pattern_detection", "detect_patterns")}
    assert [c for e in detections for c in e["extra"]["chunks"]] == list(range(12))
    assert sorted(f.rsplit("/", 1)[1] for e in detections for f in e["extra"]["files"]) == sorted(got)
    assert len(events) == len(uploads) + len(detections) == 1 + 1  # an event a task, whatever its runs

    log = airflow(airflow_env, "dags", "test", "pattern_detection")
    assert "the stream is finished: nothing to wait for" in log

    airflow(airflow_env, "dags", "test", "stream_reset")
    assert store.list("") == []


def test_a_lasting_error_fails_the_task_at_once_without_its_retries(tmp_path, s3_endpoint, bucket, small_banksim):
    """A setting another try would read again: one try, its message in the log, no retry."""
    env = airflow_environment(tmp_path / "airflow", s3_endpoint, bucket, small_banksim, CHUNK, {"chunk_size": 0})
    airflow(env, "db", "migrate")
    run = subprocess.run([AIRFLOW, "dags", "test", "transaction_producer"], capture_output=True, text=True, env=env, timeout=300)
    log = run.stdout + run.stderr
    assert "SettingsError: chunk_size must be at least 1, got 0" in log
    assert log.count("Task failed with exception") == 1, log[-3000:]
    assert "up_for_retry" not in log.lower()


def test_dags_test_with_partitions_maps_a_task_a_partition_and_detects_what_replay_detects(
    tmp_path, s3_endpoint, s3_client, bucket, small_banksim
):
    """PATTERNFLOW_PARTITIONS=3: each run maps detect_partition over the 3 partitions, then
    write_detection_files merges; the files are replay's."""
    env = airflow_environment(tmp_path / "airflow", s3_endpoint, bucket, small_banksim, CHUNK, {"max_chunks_per_run": 5})
    env["PATTERNFLOW_PARTITIONS"] = "3"
    airflow(env, "db", "migrate")
    settings = PipelineSettings(bucket=bucket, partitions=3)
    store = S3Store(s3_client, bucket)
    airflow(env, "dags", "test", "transaction_producer")

    runs = 0
    while not read_progress(store, settings).finished:
        runs += 1
        assert runs <= 4, "the detector should finish 12 chunks in 3 runs of at most 5"
        log = airflow(env, "dags", "test", "pattern_detection")
        for partition in range(3):
            assert f"'partition': {partition}, 'chunks': [" in log
        assert "Returned value was: {'chunks': [" in log  # write_detection_files
    assert runs == 3

    replay(small_banksim.transactions, small_banksim.importance, tmp_path / "replay", lively_config(CHUNK))
    expected = {name: [row[2:] for row in file_rows(text)] for name, text in read_files(tmp_path / "replay").items()}
    got = {k.rsplit("/", 1)[1]: [row[2:] for row in file_rows(store.get(k).decode())] for k in store.list(settings.output_prefix)}
    assert got == expected
