"""SIGKILL of a detection run at each stage: the next runs end with exactly replay's files.

The run is a real ``detect`` in a child process talking to the S3 server through the fault
proxy. The proxy holds back one chosen request, so the test knows the child has got exactly
that far (and no further) when it kills it: nothing is timed, nothing can race past the point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from patternflow.engine.state import StateStore
from patternflow.pipeline.detector import detect
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.sources import source_opener
from tests.helpers import lively_config
from tests.reliability.conftest import CHUNK, s3_files, stream_settings

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent(
    """
    import sys
    from patternflow.pipeline.detector import detect
    from patternflow.pipeline.s3 import S3Store, endpoint_client
    from patternflow.pipeline.settings import PipelineSettings
    from tests.helpers import lively_config

    endpoint, bucket, transactions, importance, chunk = sys.argv[1:]
    settings = PipelineSettings(
        bucket=bucket, transactions=transactions, importance=importance, chunk_size=int(chunk), max_chunks_per_run=100
    )
    store = S3Store(endpoint_client(endpoint, access_key="test", secret_key="test"), bucket)
    detect(store, settings, lively_config(int(chunk)))
    """
)


def start_driver(endpoint: str, bucket: str, banksim) -> subprocess.Popen:
    """One detection run over every waiting chunk, in a process of its own."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(PROJECT / "include"), str(PROJECT)])}
    args = [endpoint, bucket, str(banksim.transactions), str(banksim.importance), str(CHUNK)]
    return subprocess.Popen([sys.executable, "-c", DRIVER, *args], env=env, cwd=PROJECT, stderr=subprocess.PIPE, text=True)


def current_version(store: S3Store) -> int:
    return json.loads(store.get("state/CURRENT"))["version"]


STAGES = {
    # stage: (request held back, what must be true on S3 at that moment)
    "reading chunks": r"^GET /[^/]+/transaction_chunks/chunk_6\.csv",
    "after some detection files": r"^GET /[^/]+/transaction_chunks/chunk_13\.csv",
    "state written, CURRENT not yet": r"^PUT /[^/]+/state/CURRENT",
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_run_killed_at_any_stage_is_redone_with_identical_files(stage, small_banksim, s3_client, bucket, proxy, replayed):
    """A killed run leaves the previous commit current; the next run redoes its chunks and
    rewrites its files under the same names with the same rows: nothing lost, nothing twice."""
    settings = stream_settings(bucket, small_banksim, max_chunks_per_run=4)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    detect(store, settings, lively_config(CHUNK))  # chunks 0..3 committed as version 1
    assert current_version(store) == 1

    held = proxy.hold(STAGES[stage])
    driver = start_driver(proxy.url, bucket, small_banksim)
    try:
        if not held.wait(timeout=120):
            driver.kill()
            pytest.fail(f"the run never reached {STAGES[stage]}: {driver.communicate()[1][-3000:]}")
        written = s3_files(store, settings)
        if stage == "reading chunks":
            assert written == {}  # chunks 4 and 5 folded, no file yet
        elif stage == "after some detection files":
            assert list(written) == ["detection_0.csv"]
        else:
            assert store.exists(f"state/versions/{2:010d}/manifest.json")  # the whole new version is there
            assert list(written) == ["detection_0.csv", "detection_1.csv", "detection_2.csv"]
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.communicate()
    assert driver.returncode == -signal.SIGKILL
    assert current_version(store) == 1  # the killed run committed nothing

    reports = [detect(store, settings, lively_config(CHUNK)) for _ in range(10)]
    assert [c for r in reports for c in r.chunks] == list(range(4, 30))  # each chunk folded once after the kill
    assert StateStore(store, settings.state_prefix).load().state.finished
    assert s3_files(store, settings) == replayed
