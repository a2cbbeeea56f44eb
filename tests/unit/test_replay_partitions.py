"""``patternflow replay --partitions N``: the partitioned engine, run locally, writes one engine's
files for every N and every number of worker processes, and resumes exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patternflow.cli import main
from patternflow.engine.state import StateError, StateStore
from patternflow.engine.store import LocalStore
from patternflow.ingest.parsing import read_importance, read_transactions
from patternflow.replay import PARTITIONING, replay
from tests.helpers import file_rows, lively_config, read_files, run_stream
from tests.strategies import small_streams
from tests.unit.test_replay import replay_args, without_times


class Crash(Exception):
    """Raised from the per-chunk callback: the replay stops there, as if killed after that chunk's files."""


def crash_after(chunk: int):
    def on_chunk(result, total) -> None:
        if result.index == chunk:
            raise Crash(chunk)

    return on_chunk


@pytest.fixture(scope="module")
def one_engine(small_banksim, tmp_path_factory) -> dict[str, list[list[str]]]:
    """The engine's own files for the 60,000-row stream, in chunks of 5,000, under thresholds at
    which every pattern fires."""
    files = run_stream(
        read_transactions(small_banksim.transactions),
        read_importance(small_banksim.importance),
        lively_config(5_000),
        tmp_path_factory.mktemp("one-engine"),
    )
    return without_times(files)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("partitions", [1, 2, 4, 8])
def test_any_partitions_over_any_jobs_write_one_engines_files(small_banksim, one_engine, tmp_path, partitions, jobs):
    summary = replay(small_banksim.transactions, small_banksim.importance, tmp_path, lively_config(5_000), partitions=partitions, jobs=jobs)
    files = read_files(tmp_path)
    assert without_times(files) == one_engine
    assert len(one_engine) >= 3 and all(summary.detections_by_pattern.values())
    assert (summary.chunks, summary.rows, len(summary.files)) == (12, 60_000, len(one_engine))
    assert summary.detections == sum(len(rows) for rows in one_engine.values())
    rows = [row for name in sorted(files, key=lambda n: int(n[10:-4])) for row in file_rows(files[name])]
    assert all(row[0] <= row[1] for row in rows)  # YStartTime, then detectionTime
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)  # one start a chunk, chunks in order


def write_stream(folder: Path, transactions: pa.Table, importance: pa.Table) -> tuple[Path, Path]:
    """The tables as BankSim CSV files (quoted ids, bare numbers)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = zip(*(transactions[c].to_pylist() for c in ("customer", "gender", "merchant", "amount")), strict=True)
    lines = ["step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud"]
    lines += [f"0,'{c}','3','{g}','28007','{m}','28007','es_food',{a:.2f},0" for c, g, m, a in rows]
    weights = zip(*(importance[c].to_pylist() for c in ("Source", "Target", "Weight")), strict=True)
    importance_lines = ["Source,Target,Weight,typeTrans,fraud"] + [f"'{c}','{m}',{w:.2f},'es_food',0" for c, m, w in weights]
    (folder / "transactions.csv").write_text("\n".join(lines) + "\n")
    (folder / "importance.csv").write_text("\n".join(importance_lines) + "\n")
    return folder / "transactions.csv", folder / "importance.csv"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(small_streams(), st.integers(1, 6), st.one_of(st.none(), st.integers(0, 30)), st.booleans())
def test_any_partitions_replay_the_files_of_one_engine_also_stopped_and_resumed(tmp_path_factory, stream, partitions, stop, with_state):
    """Random streams, thresholds, chunk sizes and N (in this process): the files of a one-engine
    replay, also when the replay stops after a random chunk and is run again on its state."""
    transactions, importance, config = stream
    folder = tmp_path_factory.mktemp("stream")
    paths = write_stream(folder, transactions, importance)
    replay(*paths, folder / "one", config)
    state = folder / "state" if with_state else None
    chunks = -(-transactions.num_rows // config.chunk_size)
    if state is not None and stop is not None and stop < chunks:
        with pytest.raises(Crash):
            replay(*paths, folder / "many", config, state, on_chunk=crash_after(stop), commit_every=0, partitions=partitions, jobs=1)
    resumed = replay(*paths, folder / "many", config, state, commit_every=0, partitions=partitions, jobs=1)
    assert without_times(read_files(folder / "many")) == without_times(read_files(folder / "one"))
    assert resumed.first_chunk + resumed.chunks == chunks


def committed_chunks(state: Path, prefix: str = "") -> int:
    return json.loads((state / prefix / "CURRENT").read_text())["chunks_folded"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_partition_committed_behind_the_stream_folds_again_what_it_lacks(small_banksim, one_engine, tmp_path, jobs):
    """A replay stopped between the stream's commit and the partitions' leaves partitions behind
    the stream: run again, they fold the chunks they lack and their detections are not repeated."""
    config, state = lively_config(5_000), tmp_path / "state"
    args = (small_banksim.transactions, small_banksim.importance, tmp_path / "out", config, state)
    with pytest.raises(Crash):
        replay(*args, on_chunk=crash_after(7), commit_every=0, partitions=3, jobs=jobs)
    assert committed_chunks(state) == 7 and {committed_chunks(state, f"partitions/{k}") for k in range(3)} == {7}
    # partition 1's commits of chunks 6 and 7 undone: its CURRENT back at the version of chunk 5
    partition = StateStore(LocalStore(state / "partitions/1"))
    older = next(
        v
        for v in partition.versions()
        if json.loads((state / f"partitions/1/versions/{v:010d}/manifest.json").read_text())["chunks_folded"] == 5
    )
    (state / "partitions/1/CURRENT").write_bytes((state / f"partitions/1/versions/{older:010d}/manifest.json").read_bytes())
    assert partition.load().state.chunks_folded == 5

    resumed = replay(*args, commit_every=0, partitions=3, jobs=jobs)
    assert (resumed.first_chunk, resumed.chunks) == (7, 5)
    assert without_times(read_files(tmp_path / "out")) == one_engine
    assert {committed_chunks(state, f"partitions/{k}") for k in range(3)} == {committed_chunks(state)} == {12}


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def ended(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers end with the replay through Linux's parent-death signal")
def test_partitioned_replay_killed_with_sigkill_resumes_to_identical_files(small_banksim, tmp_path):
    state = tmp_path / "state"
    args = replay_args(small_banksim, tmp_path / "out", "--chunk-size", "500", "--state", str(state), "--commit-every", "0")
    command = [sys.executable, "-m", "patternflow.cli", *args, "--partitions", "3", "--jobs", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (state / "CURRENT").exists() and committed_chunks(state) >= 20:
            break
        time.sleep(0.01)
    started = children(process.pid)  # the two workers, and multiprocessing's resource tracker
    workers = [pid for pid in started if "spawn_main" in command_line(pid)]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and len(workers) == 2
    killed_at = committed_chunks(state)
    assert 20 <= killed_at < 120
    deadline = time.monotonic() + 10
    while not all(ended(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(ended(pid) for pid in started), "a worker outlived the replay it belonged to"
    assert all(committed_chunks(state, f"partitions/{k}") <= killed_at for k in range(3))

    resumed = subprocess.run(command, capture_output=True, text=True, check=True)
    assert f"resumed at chunk {killed_at}" in resumed.stdout
    clean = subprocess.run(
        [sys.executable, "-m", "patternflow.cli", *replay_args(small_banksim, tmp_path / "clean", "--chunk-size", "500")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "replayed 120 chunks" in clean.stdout
    assert without_times(read_files(tmp_path / "out")) == without_times(read_files(tmp_path / "clean"))
    assert json.loads((state / "CURRENT").read_text())["finished"] is True
    assert {committed_chunks(state, f"partitions/{k}") for k in range(3)} == {120}


def test_a_resumed_replay_refuses_other_partitions_naming_the_option(small_banksim, tmp_path, capsys):
    partitioned, single = tmp_path / "partitioned", tmp_path / "single"
    base = ("--chunk-size", "20000", "--state")
    assert main([*replay_args(small_banksim, tmp_path / "a", *base, str(partitioned)), "--partitions", "3", "--jobs", "1"]) == 0
    assert json.loads((partitioned / PARTITIONING).read_text()) == {"partitions": 3}
    assert main(replay_args(small_banksim, tmp_path / "b", *base, str(single))) == 0
    assert not (single / PARTITIONING).exists()
    capsys.readouterr()
    for state, partitions, recorded in [(partitioned, "2", 3), (partitioned, "1", 3), (single, "4", 1)]:
        assert main([*replay_args(small_banksim, tmp_path / "c", *base, str(state)), "--partitions", partitions]) == 2
        error = capsys.readouterr().err
        assert f"started with --partitions {recorded}, not {partitions}" in error and f"run it again with --partitions {recorded}" in error
    assert not (tmp_path / "c").exists()  # refused before anything was written
    assert main([*replay_args(small_banksim, tmp_path / "a", *base, str(partitioned)), "--partitions", "3"]) == 0
    assert "replayed 0 chunks (resumed at chunk 3)" in capsys.readouterr().out  # finished already


def test_partitions_default_to_the_pipelines_setting(small_banksim, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATTERNFLOW_PARTITIONS", "2")
    assert (
        main([*replay_args(small_banksim, tmp_path / "out", "--chunk-size", "20000", "--state", str(tmp_path / "s")), "--jobs", "1"]) == 0
    )
    assert json.loads((tmp_path / "s" / PARTITIONING).read_text()) == {"partitions": 2}
    assert "replayed 3 chunks, 60,000 rows" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--partitions", "0", "argument --partitions: must be a positive whole number, got 0"),
        ("--jobs", "0", "argument --jobs: must be a positive whole number, got 0"),
        ("--partitions", "two", "argument --partitions: invalid"),
        ("--jobs", "1.5", "argument --jobs: invalid"),
    ],
)
def test_bad_partitions_or_jobs_are_refused_naming_the_option(small_banksim, tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_:
        main([*replay_args(small_banksim, tmp_path / "out"), option, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_line_read_by_a_worker_is_reported_as_by_one_engine(small_banksim, tmp_path, capsys):
    lines = small_banksim.transactions.read_text().splitlines(keepends=True)
    lines[12_344] = lines[12_344][:-3] + "x,0\n"
    bad = tmp_path / "transactions.csv"
    bad.write_text("".join(lines))
    args = replay_args(small_banksim, tmp_path / "out", "--partitions", "2", "--jobs", "2")
    args[2] = str(bad)
    assert main(args) == 2
    assert f"{bad}, line 12345, field '" in capsys.readouterr().err


def test_partitions_committed_ahead_of_a_stream_state_that_fell_back_resume_from_their_own_earlier_version(
    small_banksim, one_engine, tmp_path, caplog
):
    """The stream's newest state damaged: its load falls back a version, behind its partitions'
    newest. Each partition resumes from its newest version at or before the stream's, and the
    files end as one engine's, none repeated or lost."""
    config, state = lively_config(5_000), tmp_path / "state"
    args = (small_banksim.transactions, small_banksim.importance, tmp_path / "out", config, state)
    with pytest.raises(Crash):
        replay(*args, on_chunk=crash_after(7), commit_every=0, partitions=3, jobs=1)
    assert committed_chunks(state) == 7 and {committed_chunks(state, f"partitions/{k}") for k in range(3)} == {7}
    newest = max(StateStore(LocalStore(state)).versions())
    pending = state / f"versions/{newest:010d}/pending.parquet"
    pending.write_bytes(pending.read_bytes()[:-40])  # the stream's version of chunk 7, truncated
    assert StateStore(LocalStore(state)).load().state.chunks_folded == 6

    resumed = replay(*args, commit_every=0, partitions=3, jobs=1)
    assert "is damaged" in caplog.text
    assert resumed.first_chunk == 6
    assert without_times(read_files(tmp_path / "out")) == one_engine
    assert {committed_chunks(state, f"partitions/{k}") for k in range(3)} == {committed_chunks(state)} == {12}


def test_a_partition_with_no_version_at_or_before_the_streams_is_an_error_naming_it(small_banksim, tmp_path):
    config, state = lively_config(5_000), tmp_path / "state"
    args = (small_banksim.transactions, small_banksim.importance, tmp_path / "out", config, state)
    with pytest.raises(Crash):
        replay(*args, on_chunk=crash_after(3), commit_every=0, partitions=2, jobs=1)
    newest = max(StateStore(LocalStore(state)).versions())
    (state / f"versions/{newest:010d}/pending.parquet").write_bytes(b"damaged")  # the stream falls back to chunk 2
    partition = StateStore(LocalStore(state / "partitions/1"))
    for version in partition.versions()[:-1]:  # partition 1 keeps only its version of chunk 3
        for path in (state / f"partitions/1/versions/{version:010d}").iterdir():
            path.unlink()
    with pytest.raises(StateError, match=r"partition 1: .* at most 2 chunks .* reset the stream"):
        replay(*args, commit_every=0, partitions=2, jobs=1)
