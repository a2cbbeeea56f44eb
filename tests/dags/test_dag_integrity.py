"""DAG integrity: the DAG folder imports cleanly and each DAG is wired as documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {"transaction_producer", "pattern_detection", "stream_reset"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_the_dag_folder_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED


def test_every_task_retries_and_every_dag_is_owned_and_tagged(dagbag):
    for dag in dagbag.dags.values():
        assert "patternflow" in dag.tags, dag.dag_id
        assert dag.doc_md, dag.dag_id
        assert not dag.catchup, dag.dag_id
        assert dag.max_active_runs == 1, dag.dag_id
        for task in dag.tasks:
            assert task.retries >= 2, task.task_id
            assert task.owner == "patternflow", task.task_id


def test_the_producer_ticks_every_second(dagbag):
    dag = dagbag.dags["transaction_producer"]
    assert dag.schedule == timedelta(seconds=1)
    assert [t.task_id for t in dag.tasks] == ["upload_due_chunks"]
    form = dag.params
    assert form["pacing"] == "auto"
    for name in ("bucket", "chunks_prefix", "reference_prefix", "transactions", "importance", "chunk_size", "tick_seconds"):
        assert form[name] is None  # empty: Variable, environment or default
        assert form.get_param(name).description


def test_the_detector_runs_continuously_behind_a_deferrable_s3_sensor(dagbag):
    from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

    dag = dagbag.dags["pattern_detection"]
    assert type(dag.timetable).__name__ == "ContinuousTimetable"
    sensor = dag.get_task("wait_for_next_chunk")
    assert isinstance(sensor, S3KeySensor)
    assert sensor.deferrable
    assert sensor.poke_interval <= 1
    assert [t.task_id for t in sensor.downstream_list] == ["detect_patterns"]
    form = dag.params
    for name in ("bucket", "chunks_prefix", "reference_prefix", "state_prefix", "output_prefix", "quarantine_prefix"):
        assert form[name] is None and form.get_param(name).description  # the same stream as the producer's form


def test_the_assets_draw_producer_chunks_detector_detections(dagbag):
    """The Assets view shows the stream's lineage: the producer writes the chunks' prefix, the
    detection task reads it and writes the detections' prefix; no DAG is scheduled on them."""
    from airflow.sdk import Asset

    from patternflow.pipeline.settings import PipelineSettings

    deployment = PipelineSettings.resolve()
    chunks = Asset(f"s3://{deployment.bucket}/transaction_chunks/")
    detections = Asset(f"s3://{deployment.bucket}/output_detections/")
    upload = dagbag.dags["transaction_producer"].get_task("upload_due_chunks")
    detect = dagbag.dags["pattern_detection"].get_task("detect_patterns")
    assert upload.outlets == [chunks] and upload.inlets == []
    assert detect.inlets == [chunks] and detect.outlets == [detections]
    assert dagbag.dags["pattern_detection"].get_task("wait_for_next_chunk").outlets == []
    for dag in dagbag.dags.values():
        assert type(dag.timetable).__name__ != "AssetTriggeredTimetable", dag.dag_id  # the sensor schedules detection


def test_the_reset_dag_runs_only_when_triggered(dagbag):
    dag = dagbag.dags["stream_reset"]
    assert dag.schedule is None
    assert {"bucket", "chunks_prefix", "reference_prefix", "state_prefix", "output_prefix", "quarantine_prefix"} <= set(dag.params)


def test_dag_files_do_no_io_and_no_heavy_imports_at_parse_time(tmp_path):
    """Each DAG file imports with the network cut off and without the data libraries."""
    probe = f"""
import json, socket, sys, importlib.util
def refuse(*args, **kwargs):
    raise AssertionError("network access while parsing a DAG file")
socket.socket.connect = refuse
socket.create_connection = refuse
for name in {sorted(EXPECTED)!r}:
    spec = importlib.util.spec_from_file_location(name, {str(DAGS)!r} + "/" + name + ".py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(m for m in ("duckdb", "pyarrow", "pandas", "numpy", "moto") if m in sys.modules)))
"""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
