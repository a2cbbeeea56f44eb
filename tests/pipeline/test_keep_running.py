"""A detection task that goes on with the next run while chunks keep landing: each run commits on
its own, and the files are replay's whatever the producer's pace."""

from __future__ import annotations

import json

import pytest

from patternflow.pipeline.detector import detect
from patternflow.pipeline.layout import current_state_key, end_of_stream_key
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings, SettingsError
from patternflow.pipeline.sources import source_opener
from patternflow.pipeline.status import read_chunk_metrics, read_progress
from tests.helpers import lively_config
from tests.pipeline.test_detector import CHUNK, s3_files, settings_for


class Producing:
    """An S3Store on which the producer uploads ``per_commit`` more chunks each time the detector
    commits: chunks land while a detection run works, as they do at ten chunks a second."""

    def __init__(self, inner: S3Store, settings: PipelineSettings, per_commit: int) -> None:
        self.inner, self.settings, self.per_commit = inner, settings, per_commit
        self.opener = source_opener(lambda: inner.client)
        self.due = 0
        self.commits = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def start(self, chunks: int) -> None:
        self.due = chunks
        produce(self.inner, self.settings, self.opener, 0.0, fast=False)
        produce(self.inner, self.settings, self.opener, float(chunks - 1), fast=False)

    def replace(self, key, data, expected):
        tag = self.inner.replace(key, data, expected)
        if key == current_state_key(self.settings):
            self.commits += 1
            self.due += self.per_commit
            produce(self.inner, self.settings, self.opener, float(self.due - 1), fast=False)
        return tag


class Clock:
    """Wall time that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1_000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def stream(s3_client, bucket, banksim, per_commit: int, **extra) -> tuple[Producing, PipelineSettings]:
    settings = settings_for(bucket, banksim, tick_seconds=1.0, **extra)
    store = Producing(S3Store(s3_client, bucket), settings, per_commit)
    store.start(2)
    return store, settings


def test_a_task_takes_the_chunks_that_land_during_its_runs_each_run_committed(small_banksim, s3_client, bucket, replayed):
    store, settings = stream(s3_client, bucket, small_banksim, per_commit=3, max_chunks_per_run=2)
    report = detect(store, settings, lively_config(CHUNK), keep_running_seconds=600)
    assert report.chunks == list(range(12)) and report.end_of_stream
    assert s3_files(store.inner, settings) == replayed
    records = read_chunk_metrics(store.inner, settings)
    assert [m["index"] for m in records] == list(range(12))
    committed = sorted({m["committed_at"] for m in records})
    assert len(committed) == store.commits == 6  # a commit a run of 2 chunks; the last run also finished the stream
    assert json.loads(store.inner.get(current_state_key(settings)))["version"] == store.commits
    assert read_progress(store.inner, settings).finished


class Waiting:
    """A wall clock that only sleeping moves, recording each sleep; ``on_sleep`` is called with
    the number of sleeps so far (a producer pausing, then uploading)."""

    def __init__(self, on_sleep=lambda count: None) -> None:
        self.now, self.sleeps, self.on_sleep = 1_000.0, [], on_sleep

    def wall(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


def test_a_task_ends_once_nothing_landed_for_idle_seconds(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, per_commit=0, idle_seconds=3.0, poke_interval_seconds=0.5)
    clock = Waiting()
    report = detect(store, settings, lively_config(CHUNK), wall=clock.wall, keep_running_seconds=600, sleep=clock.sleep)
    assert report.chunks == [0, 1] and not report.end_of_stream
    assert store.commits == 1  # the run after it took nothing and committed nothing
    assert clock.sleeps == [0.5] * 6  # chunk 2 looked for every poke interval, for idle_seconds


def test_a_chunk_landing_while_the_task_waits_is_taken_by_the_same_task(small_banksim, s3_client, bucket, replayed):
    store, settings = stream(s3_client, bucket, small_banksim, per_commit=0, idle_seconds=3.0, poke_interval_seconds=0.5)

    def producer_pauses_then_uploads(sleeps: int) -> None:
        if sleeps == 4:  # 2 s into the wait: the producer uploads the rest of the stream
            produce(store.inner, settings, store.opener, 1_000.0, fast=True)

    clock = Waiting(producer_pauses_then_uploads)
    report = detect(store, settings, lively_config(CHUNK), wall=clock.wall, keep_running_seconds=600, sleep=clock.sleep)
    assert report.chunks == list(range(12)) and report.end_of_stream
    assert s3_files(store.inner, settings) == replayed
    assert clock.sleeps == [0.5] * 4


def test_idle_seconds_of_zero_end_a_task_at_the_first_run_that_finds_nothing(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, per_commit=0, idle_seconds=0)
    clock = Waiting()
    report = detect(store, settings, lively_config(CHUNK), wall=clock.wall, keep_running_seconds=600, sleep=clock.sleep)
    assert report.chunks == [0, 1] and clock.sleeps == []


def test_a_task_stops_once_its_time_is_up(small_banksim, s3_client, bucket, replayed):
    store, settings = stream(s3_client, bucket, small_banksim, per_commit=1, max_chunks_per_run=1)
    report = detect(store, settings, lively_config(CHUNK), wall=Clock(step=1.0), keep_running_seconds=20)
    assert 1 < len(report.chunks) < 12 and report.chunks == list(range(len(report.chunks)))
    assert store.commits == len(report.chunks)
    later = detect(store.inner, settings, lively_config(CHUNK), keep_running_seconds=600)
    assert later.chunks[0] == report.chunks[-1] + 1


def test_one_run_a_task_unless_asked(small_banksim, s3_client, bucket):
    store, settings = stream(s3_client, bucket, small_banksim, per_commit=3, max_chunks_per_run=2)
    assert settings.keep_running_seconds == 300
    assert detect(store, settings, lively_config(CHUNK)).chunks == [0, 1]
    assert store.commits == 1


def test_the_end_marker_landing_during_a_task_finishes_the_stream(small_banksim, s3_client, bucket, replayed):
    store, settings = stream(s3_client, bucket, small_banksim, per_commit=10)
    report = detect(store, settings, lively_config(CHUNK), keep_running_seconds=600)
    assert store.inner.exists(end_of_stream_key(settings))
    assert report.chunks == list(range(12)) and report.end_of_stream
    assert s3_files(store.inner, settings) == replayed


@pytest.mark.parametrize("name", ["keep_running_seconds", "idle_seconds"])
@pytest.mark.parametrize("value", [-1, float("nan"), 86_401])
def test_the_keep_running_times_are_checked(small_banksim, bucket, name, value):
    with pytest.raises(SettingsError, match=name):
        settings_for(bucket, small_banksim, **{name: value})
