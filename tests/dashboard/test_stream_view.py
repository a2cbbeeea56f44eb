"""The figures of the page and the report (``stream_view``) against what the state and S3 hold."""

from __future__ import annotations

import json
import math
import statistics
from datetime import UTC, datetime

from patternflow.engine.detections import FILE_HEADER
from patternflow.engine.store import LocalStore
from patternflow.pipeline.layout import PATTERNS, partition_state_prefix
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.status import read_chunk_metrics, read_partitions, read_progress, recorded_partitions
from patternflow.web.stream_view import LATEST_ROWS, RowCounts, build_view
from patternflow.web.view_html import render_sections
from tests.dashboard.chromium import figures
from tests.dashboard.conftest import Stream
from tests.helpers import file_rows


def files_on_s3(stream: Stream) -> dict[str, list[list[str]]]:
    prefix = stream.settings.output_prefix
    return {key[len(prefix) :]: file_rows(stream.store.get(key).decode()) for key in stream.store.list(prefix)}


def test_a_finished_stream_shows_what_its_state_holds(finished):
    view = build_view(finished.store, finished.settings)
    state = read_progress(finished.store, finished.settings)
    metrics = read_chunk_metrics(finished.store, finished.settings)
    on_s3 = files_on_s3(finished)

    assert view["progress"] == {
        "started": True,
        "chunks_total": state.chunks_total,
        "rows_total": state.rows_total,
        "chunks_uploaded": state.chunks_total,
        "chunks_processed": state.chunks_folded,
        "rows_processed": state.rows_folded,
        "end_of_stream_marker": True,
        "finished": True,
        "committed_at": state.committed_at,
    }
    assert view["detections"]["by_pattern"] == state.detections_by_pattern
    assert view["detections"]["total"] == state.detections == sum(len(rows) for rows in on_s3.values())
    assert view["detections"]["pending"] == 0
    assert {f["name"]: f["rows"] for f in view["files"]} == {name: len(rows) for name, rows in on_s3.items()}
    assert [f["name"] for f in view["files"]] == [f"detection_{i}.csv" for i in range(len(on_s3))]  # in file order

    assert [c["index"] for c in view["chunks"]] == list(range(state.chunks_total))
    for chunk, record in zip(view["chunks"], metrics, strict=True):
        assert chunk["lag_seconds"] == record["committed_at"] - record["uploaded_at"] > 0
        assert chunk["processing_seconds"] == record["finished_at"] - record["started_at"] >= 0
        assert record["uploaded_at"] <= record["started_at"] <= record["finished_at"] <= record["committed_at"]
    for pattern in PATTERNS:  # every detection is counted once, in the chunk that made it
        assert sum(c["new_detections"][pattern] for c in view["chunks"]) == state.detections_by_pattern[pattern]
    written = [name for c in view["chunks"] for name in c["files"]]
    assert written == sorted(on_s3, key=lambda n: int(n[10:-4]))  # each file once, in order, the last partial one too
    lags = sorted(c["lag_seconds"] for c in view["chunks"])
    assert view["lag_seconds"]["min"] == lags[0] and view["lag_seconds"]["max"] == lags[-1]
    assert view["lag_seconds"]["median"] == statistics.median(lags)
    assert view["lag_seconds"]["p95"] == lags[math.ceil(0.95 * len(lags)) - 1]  # nearest rank

    newest = [row for name in sorted(on_s3, key=lambda n: int(n[10:-4])) for row in on_s3[name]][::-1][:LATEST_ROWS]
    shown = [[row[column] for column in FILE_HEADER] for row in view["latest_detections"]]
    assert shown == newest


def test_a_running_stream_shows_the_chunks_still_waiting(running):
    view = build_view(running.store, running.settings)
    state = read_progress(running.store, running.settings)

    assert not state.finished and state.chunks_folded == 6
    assert view["progress"]["chunks_processed"] == 6
    assert view["progress"]["chunks_uploaded"] == view["progress"]["chunks_total"] == 12
    assert view["progress"]["end_of_stream_marker"] and not view["progress"]["finished"]
    assert [c["index"] for c in view["chunks"]] == list(range(6))
    in_files = sum(len(rows) for rows in files_on_s3(running).values())
    assert view["detections"]["in_files"] == in_files
    assert view["detections"]["pending"] == state.detections - in_files > 0  # not yet 50 for the next file
    waiting = view["latest_detections"][: view["detections"]["pending"]]
    assert waiting and all(row["file"] == "" for row in waiting)  # shown before they have their file
    newest_in_files = [row for row in view["latest_detections"] if row["file"]]
    assert all(row["file"] for row in view["latest_detections"][len(waiting) :]) and len(waiting) + len(newest_in_files) == min(
        LATEST_ROWS, state.detections
    )
    assert "(waiting for its file of 50)" in render_sections(view) and "<th>YStartTime</th>" in render_sections(view)


def test_chunks_uploaded_counts_every_chunk_on_s3_gaps_or_not(running):
    from patternflow.pipeline.layout import chunk_key

    key = chunk_key(running.settings, 9)
    data = running.store.get(key)
    running.store.delete([key])
    try:
        assert build_view(running.store, running.settings)["progress"]["chunks_uploaded"] == 11
    finally:
        running.store.put(key, data)


def test_a_bucket_without_a_stream_shows_an_empty_view(tmp_path):
    view = build_view(LocalStore(tmp_path), PipelineSettings())
    assert view["progress"]["started"] is False
    assert view["chunks"] == view["files"] == view["latest_detections"] == []
    assert view["lag_seconds"] is None
    assert "no stream yet" in render_sections(view)


class CountingStore(LocalStore):
    """A folder store that counts the reads of each key."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads: dict[str, int] = {}

    def get(self, key: str) -> bytes:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key)


HEADER = "YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId\n"


def test_a_detection_file_is_read_again_only_when_it_changed(tmp_path):
    store, settings, counts = CountingStore(tmp_path), PipelineSettings(), RowCounts()
    key = f"{settings.output_prefix}detection_0.csv"
    store.put(key, (HEADER + "a,b,PatId1,UPGRADE,C1,M1\n").encode())
    first = counts.rows(store, key, "digest-1")
    again = counts.rows(store, key, "digest-1")
    assert first == again == [["a", "b", "PatId1", "UPGRADE", "C1", "M1"]] and store.reads[key] == 1
    store.put(key, (HEADER + "a,b,PatId1,UPGRADE,C1,M1\na,b,PatId2,CHILD,C2,M1\n").encode())
    assert len(counts.rows(store, key, "digest-2")) == 2 and store.reads[key] == 2
    assert len(counts.known) == 1  # the old version is forgotten


def test_values_from_s3_are_escaped_in_the_html(tmp_path):
    store, settings = LocalStore(tmp_path), PipelineSettings()
    store.put(f"{settings.output_prefix}detection_0.csv", (HEADER + 'a,b,PatId1,UPGRADE,"<img src=x onerror=alert(1)>",M1\n').encode())
    html = render_sections(build_view(store, settings))
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


UNITS = {"KiB": 1024, "MiB": 1024**2}


def shown_bytes(text: str) -> float:
    """A state size as shown ("48.3 KiB"), in its own unit."""
    return float(text.split()[0].replace(",", ""))


def committed(stream, partition: int) -> dict:
    return json.loads(stream.store.get(f"{partition_state_prefix(stream.settings, partition)}CURRENT"))


def chain_keys(stream, partition: int, current: dict) -> list[str]:
    """The object keys of every version in ``current``'s chain, each read from its own manifest."""
    prefix = partition_state_prefix(stream.settings, partition)
    manifests = [json.loads(stream.store.get(f"{prefix}versions/{v:010d}/manifest.json")) for v in current["chain"]]
    return [entry["key"] for manifest in manifests for entry in manifest["objects"].values()]


def test_a_partitioned_stream_shows_each_partitions_committed_state(partitioned):
    view = build_view(partitioned.store, partitioned.settings)
    assert view["progress"]["finished"] and view["progress"]["chunks_processed"] == 12
    assert [p["partition"] for p in view["partitions"]] == [0, 1, 2]
    for shown in view["partitions"]:
        task = partitioned.reports[shown["partition"]]  # the partition's last task, as it reported itself
        current = committed(partitioned, shown["partition"])
        chain_on_s3 = sum(partitioned.store.size(key) for key in chain_keys(partitioned, shown["partition"], current))
        assert shown["started"] and shown["chunks_processed"] == task.chunks[-1] + 1 == 12 and shown["last_chunk"] == 11
        assert shown["state_version"] == task.state_version
        assert shown["state_bytes"] == task.state_bytes == chain_on_s3 > 0
        assert shown["committed_at"] == current["committed_at"]

    html = figures(render_sections(view))
    assert html.figures["partitions"] == ["3"]
    assert html.figures["partition_last_chunk"] == ["11"] * 3
    for text, shown in zip(html.figures["partition_state_bytes"], view["partitions"], strict=True):
        unit = "KiB" if shown["state_bytes"] < UNITS["MiB"] else "MiB"
        assert text.endswith(f" {unit}") and shown_bytes(text) == round(shown["state_bytes"] / UNITS[unit], 1)
    assert html.figures["partition_last_run"] == [
        datetime.fromisoformat(p["committed_at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") for p in view["partitions"]
    ]


def test_partitions_at_different_chunks_and_one_not_started(partitions_apart):
    view = build_view(partitions_apart.store, partitions_apart.settings)
    assert view["progress"]["chunks_processed"] == 0  # no chunk has been folded by every partition yet
    assert [(p["chunks_processed"], p["last_chunk"], p["started"]) for p in view["partitions"]] == [
        (6, 5, True),
        (3, 2, True),
        (0, None, False),
    ]
    idle = view["partitions"][2]
    assert idle["state_bytes"] == 0 and idle["committed_at"] is None and idle["state_version"] is None
    assert [p["state_bytes"] for p in view["partitions"][:2]] == [partitions_apart.reports[k].state_bytes for k in (0, 1)]

    html = render_sections(view)
    shown = figures(html)
    assert shown.figures["partition_last_chunk"] == ["5", "2", "\u2013"]
    assert shown.figures["partition_last_run"][2] == "not started"
    assert '<tr data-partition="2" class="pf-idle">' in html


def test_a_stream_of_one_partition_shows_no_partitions(finished, running):
    for stream in (finished, running):
        view = build_view(stream.store, stream.settings)
        assert "partitions" not in view
        html = render_sections(view)
        assert "data-partition" not in html and "Merchant partitions" not in html
    assert recorded_partitions(finished.store, finished.settings) == 1 and read_partitions(finished.store, finished.settings) == []
