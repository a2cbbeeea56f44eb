"""The detection DAG's shape with merchant partitions: one mapped task a partition, then the merge."""

from __future__ import annotations

import pytest

from tests.dags.test_dag_integrity import DAGS


@pytest.fixture
def partitioned_dag(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setenv("PATTERNFLOW_PARTITIONS", "4")
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(DAGS / "pattern_detection.py"))
    assert dagbag.import_errors == {}
    return dagbag.dags["pattern_detection"]


def test_partitions_map_one_detection_task_each_then_merge(partitioned_dag):
    from airflow.sdk import Asset

    from patternflow.pipeline.settings import PipelineSettings

    dag = partitioned_dag
    assert {t.task_id for t in dag.tasks} == {"wait_for_next_chunk", "detect_partition", "write_detection_files"}
    mapped = dag.get_task("detect_partition")
    assert mapped.is_mapped and mapped.op_kwargs_expand_input.value == {"partition": [0, 1, 2, 3]}
    assert [t.task_id for t in dag.get_task("wait_for_next_chunk").downstream_list] == ["detect_partition"]
    assert [t.task_id for t in mapped.downstream_list] == ["write_detection_files"]
    bucket = PipelineSettings.resolve().bucket
    assert mapped.inlets == [Asset(f"s3://{bucket}/transaction_chunks/")] and mapped.outlets == []
    assert dag.get_task("write_detection_files").outlets == [Asset(f"s3://{bucket}/output_detections/")]
    for task in dag.tasks:
        assert task.retries >= 2 and task.owner == "patternflow", task.task_id


def test_one_partition_keeps_a_single_detection_task(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PATTERNFLOW_PARTITIONS", "1")
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "pattern_detection.py")).dags["pattern_detection"]
    assert [t.task_id for t in dag.tasks] == ["wait_for_next_chunk", "detect_patterns"]
