"""End to end with ``airflow dags test``: the real DAGs, the S3 server on 127.0.0.1, one process a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from patternflow.replay import replay
from patternflow.s3 import S3Store
from patternflow.settings import PipelineSettings
from patternflow.status import read_progress
from tests.helpers import file_rows, lively_config, lively_environment, read_files

PROJECT = Path(__file__).resolve().parents[2]
CHUNK = 5_000

pytestmark = pytest.mark.slow


def airflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], capture_output=True, text=True, env=env, timeout=300, cwd=PROJECT
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


@pytest.fixture
def airflow_env(tmp_path, s3_endpoint, bucket, small_banksim) -> dict[str, str]:
    connection = {
        "conn_type": "aws",
        "login": "test",
        "password": "test",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATTERNFLOW_"))}
    env |= lively_environment(CHUNK) | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        "PATTERNFLOW_BUCKET": bucket,
        "PATTERNFLOW_TRANSACTIONS": str(small_banksim.transactions),
        "PATTERNFLOW_IMPORTANCE": str(small_banksim.importance),
        "AIRFLOW_VAR_PATTERNFLOW_SETTINGS": json.dumps({"max_chunks_per_run": 5}),  # an Airflow Variable
    }
    airflow(env, "db", "migrate")
    return env


def test_dags_test_streams_the_file_and_detects_what_replay_detects(airflow_env, s3_client, bucket, small_banksim, tmp_path):
    settings = PipelineSettings(bucket=bucket)
    store = S3Store(s3_client, bucket)

    log = airflow(airflow_env, "dags", "test", "transaction_producer")
    assert "'uploaded': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]" in log
    assert read_progress(store, settings, count_uploads=True).end_of_stream_marker

    runs = 0
    while not read_progress(store, settings).finished:
        runs += 1
        assert runs <= 4, "the detector should finish 12 chunks in 3 runs of at most 5"
        log = airflow(airflow_env, "dags", "test", "pattern_detection")
        assert "Returned value was: {'chunks': [" in log
    assert runs == 3

    replay(small_banksim.transactions, small_banksim.importance, tmp_path / "replay", lively_config(CHUNK))
    expected = {name: [row[2:] for row in file_rows(text)] for name, text in read_files(tmp_path / "replay").items()}
    got = {k.rsplit("/", 1)[1]: [row[2:] for row in file_rows(store.get(k).decode())] for k in store.list(settings.output_prefix)}
    assert got == expected
    assert len(got) == 3

    log = airflow(airflow_env, "dags", "test", "pattern_detection")
    assert "the stream is finished: nothing to wait for" in log

    airflow(airflow_env, "dags", "test", "stream_reset")
    assert store.list("") == []
