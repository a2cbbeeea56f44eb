"""Running the real Airflow CLI against the S3 server on 127.0.0.1: the environment and the call.

Shared by the tests that drive the DAGs with ``airflow dags test`` (one process a run, no
scheduler) and the ones that serve the UI with ``airflow api-server``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import lively_environment

PROJECT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def airflow_environment(
    home: Path,
    endpoint: str,
    bucket: str,
    banksim,
    chunk_size: int,
    variables: dict | None = None,
    login: str = "test",
    password: str = "test",
) -> dict[str, str]:
    """This process's environment less any Airflow or patternflow setting, plus: AIRFLOW_HOME,
    the project's DAGs and plugins, ``aws_default`` pointing at ``endpoint``, the stream's files and
    bucket, the thresholds under which the small stream has detections, and the Variable
    ``patternflow_settings`` set to ``variables``."""
    connection = {
        "conn_type": "aws",
        "login": login,
        "password": password,
        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATTERNFLOW_"))}
    return (
        env
        | lively_environment(chunk_size)
        | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
            "PATTERNFLOW_BUCKET": bucket,
            "PATTERNFLOW_TRANSACTIONS": str(banksim.transactions),
            "PATTERNFLOW_IMPORTANCE": str(banksim.importance),
            "AIRFLOW_VAR_PATTERNFLOW_SETTINGS": json.dumps(variables or {}),  # an Airflow Variable
        }
    )


def airflow(env: dict[str, str], *args: str) -> str:
    """Run ``airflow <args>`` to the end; its output (stdout and stderr). A failure fails the test."""
    result = subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=env, timeout=300, cwd=PROJECT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


def asset_events(env: dict[str, str]) -> list[dict]:
    """Every asset event in the metadata database of ``env``'s Airflow, oldest first: the asset's
    URI, the task that emitted it and its extra."""
    query = """
import json
from airflow.models.asset import AssetEvent, AssetModel
from airflow.utils.session import create_session
with create_session() as session:
    rows = session.query(AssetModel.uri, AssetEvent.source_dag_id, AssetEvent.source_task_id, AssetEvent.extra).join(
        AssetModel, AssetModel.id == AssetEvent.asset_id).order_by(AssetEvent.id).all()
print(json.dumps([dict(uri=u, dag_id=d, task_id=t, extra=e) for u, d, t, e in rows]))
"""
    result = subprocess.run([sys.executable, "-c", query], capture_output=True, text=True, env=env, timeout=120, cwd=PROJECT)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
