"""The S3 object store against a real S3 server on 127.0.0.1, and the state store on top of it."""

from __future__ import annotations

import time

import pytest

from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import DetectionEngine
from patternflow.engine.state import StateConflict, StateStore
from patternflow.engine.store import WriteConflict
from patternflow.pipeline.s3 import S3Store
from tests.helpers import importance_table, transactions_table


def test_objects_round_trip(s3_client, bucket):
    store = S3Store(s3_client, bucket)
    before = time.time()
    store.put("a/one.csv", b"1")
    store.put("a/two.csv", b"22")
    store.put("b/three.csv", b"333")
    assert store.get("a/two.csv") == b"22"
    fetched = store.fetch("a/one.csv")
    assert fetched.data == b"1" and before - 1 <= fetched.written_at <= time.time() + 1
    assert store.exists("a/one.csv") and not store.exists("a/none.csv")
    assert store.list("a/") == ["a/one.csv", "a/two.csv"]
    assert store.read_range("b/three.csv", 1, 3) == b"33"
    store.delete(["a/one.csv", "a/two.csv"])
    assert store.list("") == ["b/three.csv"]
    try:
        store.get("a/one.csv")
    except KeyError as exc:
        assert "a/one.csv" in str(exc)
    else:
        raise AssertionError("a missing key must raise KeyError")


def test_listing_and_deleting_more_than_a_thousand_keys(s3_client, bucket):
    store = S3Store(s3_client, bucket)
    for i in range(1_005):
        s3_client.put_object(Bucket=bucket, Key=f"many/{i:05d}", Body=b"")
    assert len(store.list("many/")) == 1_005
    store.delete(store.list("many/"))
    assert store.list("many/") == []


def test_state_commits_and_loads_on_s3(s3_client, bucket):
    config = DetectionConfig(chunk_size=2)
    engine = DetectionEngine.start(importance_table([("C1", "M1", "1.50")]), config)
    engine.fold(0, transactions_table([("C1", "M1", "F", "10.00"), ("C2", "M1", "M", "5.00")]))
    state = StateStore(S3Store(s3_client, bucket), "state/")
    version = state.commit(engine.snapshot(), config)
    loaded = state.load()
    assert loaded is not None and loaded.version == version
    assert loaded.state.chunks_folded == 1 and loaded.state.rows_folded == 2
    assert all(key.startswith("state/") for key in S3Store(s3_client, bucket).list(""))


def test_replace_writes_only_over_the_version_read(s3_client, bucket):
    """S3 conditional writes: If-None-Match for a new object, If-Match the ETag read."""
    store = S3Store(s3_client, bucket)
    tag = store.replace("CURRENT", b"1", None)
    with pytest.raises(WriteConflict):
        store.replace("CURRENT", b"2", None)  # it exists now
    assert store.fetch("CURRENT").tag == tag
    newer = store.replace("CURRENT", b"3", tag)
    with pytest.raises(WriteConflict):
        store.replace("CURRENT", b"4", tag)  # a stale tag
    assert store.get("CURRENT") == b"3" and store.fetch("CURRENT").tag == newer


def test_two_runs_racing_on_s3_commit_once(s3_client, bucket):
    config = DetectionConfig(chunk_size=2)
    engine = DetectionEngine.start(importance_table([("C1", "M1", "1.50")]), config)
    first, second = StateStore(S3Store(s3_client, bucket), "state/"), StateStore(S3Store(s3_client, bucket), "state/")
    assert first.load() is None and second.load() is None
    first.commit(engine.snapshot(), config)
    with pytest.raises(StateConflict):
        second.commit(engine.snapshot(), config)


def test_keys_that_s3_refuses_to_delete_are_an_error_naming_them(s3_client, bucket):
    """DeleteObjects reports a refusal per key inside a successful response (moto only does so for
    versions under object lock, which these deletes never name), so the answer is stubbed."""
    from botocore.stub import Stubber

    store = S3Store(s3_client, bucket)
    with Stubber(s3_client) as stub:
        stub.add_response(
            "delete_objects",
            {"Errors": [{"Key": "a/two.csv", "Code": "AccessDenied", "Message": "Access Denied"}]},
            {"Bucket": bucket, "Delete": {"Objects": [{"Key": "a/one.csv"}, {"Key": "a/two.csv"}], "Quiet": True}},
        )
        with pytest.raises(PermissionError, match=r"not deleted: a/two.csv \(AccessDenied\)"):
            store.delete(["a/one.csv", "a/two.csv"])
