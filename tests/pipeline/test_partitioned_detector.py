"""Detection over merchant partitions on S3: the same files as replay for any N, exactly once
whichever task fails, dies or runs ahead of the others."""

from __future__ import annotations

import json
import random

import pytest

from patternflow.engine.state import StateStore
from patternflow.pipeline.detector import detect
from patternflow.pipeline.layout import chunk_key, end_of_stream_key, partition_state_prefix, staged_prefix, staged_range
from patternflow.pipeline.partitioned import detect_partition, write_detection_files
from patternflow.pipeline.producer import StreamError, produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings, SettingsError
from patternflow.pipeline.sources import source_opener
from patternflow.pipeline.status import read_chunk_metrics, read_progress
from tests.helpers import DiesAtWrite, Killed, file_rows, lively_config
from tests.pipeline.test_detector import CHUNK, s3_files, settings_for

CHUNKS = 12


class DyingStore(DiesAtWrite, S3Store):
    """An S3 store whose task dies at the ``die_at``-th write (put, conditional replace or delete)."""

    def __init__(self, client, bucket, die_at: int | None) -> None:
        super().__init__(client, bucket, die_at=die_at)


def stream(s3_client, bucket, small_banksim, **extra) -> tuple[S3Store, PipelineSettings]:
    settings = settings_for(bucket, small_banksim, **extra)
    store = S3Store(s3_client, bucket)
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)
    return store, settings


def dag_run(store, settings) -> None:
    """One detection DAG run: every partition task, then the merge."""
    for partition in range(settings.partitions):
        detect_partition(store, settings, partition, lively_config(CHUNK))
    write_detection_files(store, settings, lively_config(CHUNK))


@pytest.mark.parametrize(("partitions", "max_chunks"), [(1, 5), (2, 3), (4, 5), (8, 12)])
def test_partitions_write_what_replay_writes(small_banksim, s3_client, bucket, replayed, partitions, max_chunks):
    store, settings = stream(s3_client, bucket, small_banksim, partitions=partitions, max_chunks_per_run=max_chunks)
    reports = []
    for _ in range(10):
        reports.append([detect_partition(store, settings, k, lively_config(CHUNK)) for k in range(partitions)])
        merged = write_detection_files(store, settings, lively_config(CHUNK))
        if merged.end_of_stream:
            break
    assert merged.end_of_stream
    assert s3_files(store, settings) == replayed
    progress = read_progress(store, settings)
    assert progress.finished and progress.chunks_folded == CHUNKS
    assert [m["index"] for m in read_chunk_metrics(store, settings)] == list(range(CHUNKS))
    first = reports[0]
    assert [r.chunks for r in first] == [list(range(min(max_chunks, CHUNKS)))] * partitions
    assert sum(r.rows for r in first) == min(max_chunks, CHUNKS) * CHUNK  # every row in exactly one partition
    assert all(r.state_bytes > 0 for r in first)
    # merged ones are removed, once no version the stream's state may fall back to needs them
    manifests = [json.loads(store.get(key)) for key in store.list(f"{settings.state_prefix}versions/") if key.endswith("manifest.json")]
    fall_back_to = min(m["chunks_folded"] for m in manifests)
    for k in range(partitions):
        staged = [staged_range(key) for key in store.list(staged_prefix(settings, k))]
        assert all(last >= fall_back_to for _, last in staged)
        assert {i for first, last in staged for i in range(first, last + 1)} >= set(range(fall_back_to, CHUNKS))


def test_partitions_at_different_chunks_are_merged_up_to_the_slowest(small_banksim, s3_client, bucket, replayed):
    store, settings = stream(s3_client, bucket, small_banksim, partitions=3, max_chunks_per_run=2)
    for _ in range(3):
        detect_partition(store, settings, 0, lively_config(CHUNK))  # partition 0 runs ahead: chunks 0..5
    detect_partition(store, settings, 1, lively_config(CHUNK))  # 0..1
    assert write_detection_files(store, settings, lively_config(CHUNK)).chunks == []  # partition 2 has nothing yet
    detect_partition(store, settings, 2, lively_config(CHUNK))
    assert write_detection_files(store, settings, lively_config(CHUNK)).chunks == [0, 1]
    for _ in range(12):
        dag_run(store, settings)
    assert read_progress(store, settings).finished
    assert s3_files(store, settings) == replayed


@pytest.mark.parametrize("seed", range(6))
def test_tasks_dying_at_any_write_still_give_replays_files_once(small_banksim, s3_client, bucket, replayed, seed):
    """Partition tasks and merges killed at random writes (a staged object, a state object, a
    pointer, a detection file, a pruning delete), retried or not before the next run: the
    stream ends with replay's files, no row twice, none lost."""
    rng = random.Random(seed)
    store, settings = stream(s3_client, bucket, small_banksim, partitions=3, max_chunks_per_run=rng.choice([2, 3, 5]))
    died = 0
    for _ in range(60):
        for partition in rng.sample(range(3), 3):
            dying = DyingStore(s3_client, bucket, rng.choice([None, None, rng.randint(1, 12)]))
            try:
                detect_partition(dying, settings, partition, lively_config(CHUNK))
            except Killed:
                died += 1
        dying = DyingStore(s3_client, bucket, rng.choice([None, None, rng.randint(1, 8)]))
        try:
            if write_detection_files(dying, settings, lively_config(CHUNK)).end_of_stream:
                break
        except Killed:
            died += 1
    assert died > 0
    assert read_progress(store, settings).finished
    assert s3_files(store, settings) == replayed


def test_a_change_of_partitions_on_a_running_stream_is_refused(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, partitions=2, max_chunks_per_run=2)
    dag_run(store, settings)
    refused = r"partitions is {}, but the stream's detection started with 2 partition\(s\).*reset the stream"
    with pytest.raises(SettingsError, match=refused.format(3)):
        dag_run(store, PipelineSettings(**{**settings.to_json(), "partitions": 3}))
    with pytest.raises(SettingsError, match=refused.format(1)):
        detect(store, PipelineSettings(**{**settings.to_json(), "partitions": 1}), lively_config(CHUNK))


def test_a_one_engine_stream_cannot_go_on_with_partitions(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, max_chunks_per_run=2)
    detect(store, settings, lively_config(CHUNK))
    partitioned = PipelineSettings(**{**settings.to_json(), "partitions": 2})
    with pytest.raises(SettingsError, match="started with 1 partition"):
        detect_partition(store, partitioned, 0, lively_config(CHUNK))


@pytest.mark.parametrize("value", [0, -1])
def test_bad_partition_settings_are_refused(value):
    with pytest.raises(SettingsError, match=f"partitions must be at least 1, got {value}"):
        PipelineSettings(partitions=value)


def test_a_partition_state_holds_only_its_merchants(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, partitions=4, max_chunks_per_run=12)
    dag_run(store, settings)
    merchants = [set(StateStore(store, partition_state_prefix(settings, k)).load().state.merchants.column(0).to_pylist()) for k in range(4)]
    assert all(merchants) and sum(map(len, merchants)) == len(set().union(*merchants))
    assert json.loads(store.get(f"{settings.state_prefix}partitioning.json")) == {"partitions": 4}


def test_an_end_marker_after_the_last_merge_gives_the_last_file_to_the_last_chunk(small_banksim, s3_client, bucket, replayed):
    store, settings = stream(s3_client, bucket, small_banksim, partitions=2)
    store.delete([end_of_stream_key(settings)])  # as if the producer had not written it yet
    dag_run(store, settings)
    assert read_progress(store, settings).chunks_folded == CHUNKS and not read_progress(store, settings).finished
    produce(store, settings, source_opener(lambda: s3_client), 0.0, fast=True)  # writes the end marker
    dag_run(store, settings)
    assert read_progress(store, settings).finished
    assert s3_files(store, settings) == replayed
    written = [name.rsplit("/", 1)[1] for record in read_chunk_metrics(store, settings) for name in record["files"]]
    assert written == sorted(replayed, key=lambda n: int(n[10:-4]))


def test_a_stalled_partition_task_that_stages_after_the_winner_hides_nothing(small_banksim, s3_client, bucket, replayed):
    """Two tries of partition 0 from the same state (a task outliving its scheduler): the retry
    takes chunks 0..4 and commits; the stalled one, which took 0..1, stages afterwards and its
    commit is refused. The merge still finds every committed chunk, and the files are replay's."""
    from patternflow.engine.state import StateConflict

    store, settings = stream(s3_client, bucket, small_banksim, partitions=2, max_chunks_per_run=2)
    stalled_settings = settings
    settings = PipelineSettings(**{**settings.to_json(), "max_chunks_per_run": 5})

    class Stalled(S3Store):
        """Holds its staged write until the retry has committed."""

        def put(self, key, data):
            if "/staged/" in key:
                detect_partition(store, settings, 0, lively_config(CHUNK))  # the retry runs meanwhile
            return super().put(key, data)

    with pytest.raises(StateConflict):
        detect_partition(Stalled(s3_client, bucket), stalled_settings, 0, lively_config(CHUNK))
    for _ in range(12):
        dag_run(store, settings)
    assert read_progress(store, settings).finished
    assert s3_files(store, settings) == replayed


def test_every_row_of_a_chunk_gets_the_earliest_start_among_the_partitions(small_banksim, s3_client, bucket, replayed):
    """Partition k's clock runs k days ahead of partition 0's: every row in the files, whichever
    partition found it, carries the chunk's start on partition 0's day, one YStartTime a chunk."""
    from datetime import timedelta

    from tests.helpers import T0

    def clock_of(partition: int):
        ticks = iter(range(1_000_000))
        return lambda: T0 + timedelta(days=partition, seconds=next(ticks))

    store, settings = stream(s3_client, bucket, small_banksim, partitions=3)
    clocks = [clock_of(k) for k in range(3)]
    for partition in range(3):
        detect_partition(store, settings, partition, lively_config(CHUNK), clock=clocks[partition])
    write_detection_files(store, settings, lively_config(CHUNK))
    rows = [row for key in store.list(settings.output_prefix) for row in file_rows(store.get(key).decode())]
    assert {row[2] for row in rows} == {"PatId1", "PatId2", "PatId3"}
    assert {row[0][:10] for row in rows} == {T0.date().isoformat()}  # YStartTime: partition 0's day
    assert {row[1][:10] for row in rows} > {T0.date().isoformat()}  # detectionTime: each partition's own
    assert s3_files(store, settings) == replayed


def test_a_chunk_read_with_other_bytes_by_another_partition_stops_the_merge(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, partitions=2, max_chunks_per_run=1)
    detect_partition(store, settings, 0, lively_config(CHUNK))
    original = store.get(chunk_key(settings, 0))
    store.put(chunk_key(settings, 0), original.replace(b"\n", b"\r\n", 1) if b"\r\n" not in original else original + b"\n")
    detect_partition(store, settings, 1, lively_config(CHUNK))
    with pytest.raises(StreamError, match=r"chunk 0 .* was read with different bytes by the partitions .*reset the stream"):
        write_detection_files(store, settings, lively_config(CHUNK))
