"""Changelog commits: a version is its snapshot plus the deltas after it, and no crash, kill or
pruning ever changes what a resumed stream writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patternflow.engine import state as state_module
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import DetectionEngine, EngineState
from patternflow.engine.state import StateConflict, StateStore, commit_id
from patternflow.engine.store import LocalStore
from patternflow.engine.stream import commit, open_engine, write_files
from patternflow.ingest.parsing import read_importance, read_transactions
from tests.helpers import ChunkClock, DiesAtWrite, Killed, read_files, run_stream
from tests.strategies import small_streams

CONFIG = DetectionConfig(chunk_size=5_000, upgrade_min_merchant_transactions=5_000, child_min_transactions=60, rows_per_file=5)
TABLES = ("customers", "merchants", "pairs", "emitted", "pending")
COUNTERS = ("chunks_folded", "rows_folded", "files_written", "detections", "detections_by_pattern", "finished")


def assert_same_state(loaded: EngineState, expected: EngineState) -> None:
    for name in TABLES:
        assert getattr(loaded, name).equals(getattr(expected, name)), name
    for name in COUNTERS:
        assert getattr(loaded, name) == getattr(expected, name), name


def fold_chunk(engine, transactions: pa.Table, index: int) -> None:
    """Fold chunk ``index`` of ``transactions`` (chunks of ``CONFIG.chunk_size`` rows)."""
    engine.fold(index, transactions.slice(index * CONFIG.chunk_size, CONFIG.chunk_size))


@pytest.mark.parametrize("snapshot_every", [1, 3, 20])
def test_a_snapshot_and_its_deltas_load_exactly_the_state_of_the_uninterrupted_stream(small_banksim, tmp_path, snapshot_every):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    state = StateStore(LocalStore(tmp_path), snapshot_every=snapshot_every, deltas_per_snapshot=100)
    engine = open_engine(state, lambda: importance, CONFIG, ChunkClock())
    kinds = []
    for index in range(12):
        fold_chunk(engine, transactions, index)
        commit(state, engine)
        kinds.append(state.last_commit.kind)
        loaded = StateStore(LocalStore(tmp_path)).load()
        assert loaded.version == index + 1
        assert_same_state(loaded.state, engine.snapshot())
    # version 1 and 2 are snapshots (a chain needs a version on another snapshot to fall back to), then chains from 2
    assert kinds == ["snapshot" if version == 1 or (version - 2) % snapshot_every == 0 else "delta" for version in range(1, 13)]
    engine.close()


def test_a_delta_writes_what_the_run_changed_not_the_history(small_banksim, tmp_path):
    """Chunks of 1,000 rows: each touches a small part of the pairs. A delta is much smaller than
    the whole state, and the late ones are about as large as the early ones although the state grew."""
    config = DetectionConfig(**{**CONFIG.to_json(), "chunk_size": 1_000})
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    state = StateStore(LocalStore(tmp_path), snapshot_every=1_000, deltas_per_snapshot=100)
    engine = open_engine(state, lambda: importance, config, ChunkClock())
    written = []
    for index in range(60):
        engine.fold(index, transactions.slice(index * config.chunk_size, config.chunk_size))
        commit(state, engine)
        written.append(state.last_commit)
    assert written[0].kind == written[1].kind == "snapshot" and all(c.kind == "delta" for c in written[2:])
    assert all(c.chain == tuple(range(2, c.version + 1)) for c in written[1:])
    whole = StateStore(LocalStore(tmp_path / "whole"), snapshot_every=1)
    whole.commit(engine.snapshot(), config)
    deltas = [c.table_bytes for c in written[2:]]
    assert max(deltas) < whole.last_commit.table_bytes / 2
    assert sum(deltas[-10:]) < 1.5 * sum(deltas[:10])
    # a manifest names its own objects; of its chain and the kept ones, only the version numbers
    # (a few bytes each, where each object's key and checksum took about 150)
    first, last = written[2], written[-1]
    assert last.manifest_bytes - first.manifest_bytes <= 16 * (len(last.chain) - len(first.chain))
    assert_same_state(StateStore(LocalStore(tmp_path)).load().state, engine.snapshot())
    engine.close()


def test_the_changes_an_engine_records_are_exactly_the_difference_of_its_states(small_banksim, tmp_path):
    """A commit writes what the engine marked as it folded, never comparing two whole states; run
    after run (of one or several chunks) that is just what the comparison would find."""
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    state = StateStore(LocalStore(tmp_path), snapshot_every=100, deltas_per_snapshot=100)
    engine = open_engine(state, lambda: importance, CONFIG, ChunkClock())
    assert engine.changes() is None  # a new stream: nothing committed to continue
    index = 0
    for run in (1, 1, 3, 2, 1):
        before = engine.snapshot()
        for _ in range(run):
            fold_chunk(engine, transactions, index)
            index += 1
        changes, after = engine.changes(), engine.snapshot()
        if changes is not None:
            assert changes.since == commit_id(state._base.manifest)
            compared = state_module._delta(before, after)
            for name in ("customers", "merchants", "emitted", "pairs", "pending"):
                assert getattr(changes.appended, name).equals(compared[name]), name
            updates = compared["pair_updates"]
            assert changes.updated_pairs.tolist() == updates.column("pair").to_pylist()
            assert len(changes.updated_pairs) and "n" in updates.column_names
            for name in updates.column_names[1:]:
                assert changes.updates.column(name).equals(updates.column(name)), name
        commit(state, engine)
        assert state.last_commit.kind == ("delta" if state.last_commit.version > 2 else "snapshot")
        assert state._base.state is None  # no copy of the whole state kept to compare with
        assert_same_state(StateStore(LocalStore(tmp_path)).load().state, after)
    engine.close()


def test_an_engine_resumed_from_a_load_commits_its_changes_as_a_delta(small_banksim, tmp_path):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    first = open_engine(StateStore(LocalStore(tmp_path)), lambda: importance, CONFIG, ChunkClock())
    for index in range(3):
        fold_chunk(first, transactions, index)
        commit(StateStore(LocalStore(tmp_path)), first)
    first.close()
    resumed = StateStore(LocalStore(tmp_path))
    engine = open_engine(resumed, lambda: importance, CONFIG, ChunkClock())
    fold_chunk(engine, transactions, 3)
    assert commit(resumed, engine) == 4 and resumed.last_commit.kind == "delta"
    assert_same_state(StateStore(LocalStore(tmp_path)).load().state, engine.snapshot())
    engine.close()


def test_changes_recorded_on_another_version_of_the_same_number_are_written_whole(small_banksim, tmp_path):
    """Two streams at the same version number: an engine that continues one stream's version 2
    committed to the other's store is written as a snapshot, never as a delta on the wrong base."""
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    ours, theirs = StateStore(LocalStore(tmp_path / "ours")), StateStore(LocalStore(tmp_path / "theirs"))
    engine = open_engine(ours, lambda: importance, CONFIG, ChunkClock())
    other = open_engine(theirs, lambda: importance, CONFIG, ChunkClock())
    for index in range(2):
        fold_chunk(engine, transactions, index)
        commit(ours, engine)
        fold_chunk(other, transactions, 2 * index)  # a stream cut otherwise
        fold_chunk(other, transactions, 2 * index + 1)
        commit(theirs, other)
    assert ours.last_commit.version == theirs.last_commit.version == 2
    fold_chunk(engine, transactions, 2)
    commit(theirs, engine)
    assert theirs.last_commit.kind == "snapshot"
    assert_same_state(StateStore(LocalStore(tmp_path / "theirs")).load().state, engine.snapshot())
    for e in (engine, other):
        e.close()


def test_a_commit_that_lost_a_race_leaves_the_engines_changes_as_they_were(small_banksim, tmp_path):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    state = StateStore(LocalStore(tmp_path))
    engine = open_engine(state, lambda: importance, CONFIG, ChunkClock())
    fold_chunk(engine, transactions, 0)
    commit(state, engine)
    since = engine.committed_as
    other = StateStore(LocalStore(tmp_path))
    other.load()
    fold_chunk(engine, transactions, 1)
    other.commit(engine.snapshot(), CONFIG)
    fold_chunk(engine, transactions, 2)
    with pytest.raises(StateConflict):
        commit(state, engine)
    assert engine.committed_as == since and engine.changes().since == since
    engine.close()


def earlier_format(manifest: dict, manifests: dict[int, dict]) -> dict:
    """``manifest`` as it was written before manifests named only their own objects: the whole
    chain, each version's objects inline."""
    chain = [{"version": v, "kind": manifests[v]["kind"], "objects": manifests[v]["objects"]} for v in manifest["chain"]]
    own = {k: v for k, v in manifest.items() if k not in ("id", "kind", "objects", "chain", "snapshot_bytes", "chain_bytes")}
    return {**own, "chain": chain}


def test_a_state_written_in_the_earlier_manifest_format_loads_and_continues(small_banksim, tmp_path):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    state = StateStore(LocalStore(tmp_path), snapshot_every=20, deltas_per_snapshot=100)
    engine = open_engine(state, lambda: importance, CONFIG, ChunkClock())
    for index in range(5):
        fold_chunk(engine, transactions, index)
        commit(state, engine)
    paths = {int(p.parent.name): p for p in (tmp_path / "versions").glob("*/manifest.json")}
    manifests = {v: json.loads(p.read_bytes()) for v, p in paths.items()}
    for version, path in paths.items():
        path.write_text(json.dumps(earlier_format(manifests[version], manifests)))
    (tmp_path / "CURRENT").write_bytes(paths[5].read_bytes())

    resumed = StateStore(LocalStore(tmp_path), snapshot_every=20, deltas_per_snapshot=100)
    loaded = resumed.load()
    assert loaded.version == 5
    assert_same_state(loaded.state, engine.snapshot())
    assert resumed.read_pending().equals(engine.snapshot().pending)
    engine.close()
    engine = DetectionEngine(CONFIG, loaded.state, ChunkClock())
    fold_chunk(engine, transactions, 5)
    assert commit(resumed, engine) == 6
    assert resumed.last_commit.kind == "delta" and resumed.last_commit.chain == (2, 3, 4, 5, 6)
    assert resumed.last_commit.chain_bytes == manifests[5]["chain_bytes"] + resumed.last_commit.table_bytes
    assert_same_state(StateStore(LocalStore(tmp_path)).load().state, engine.snapshot())
    engine.close()


def test_a_size_bound_on_the_deltas_starts_a_new_snapshot(small_banksim, tmp_path):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    state = StateStore(LocalStore(tmp_path), snapshot_every=100, snapshot_bytes=0)
    engine = open_engine(state, lambda: importance, CONFIG, ChunkClock())
    for index in range(3):
        fold_chunk(engine, transactions, index)
        commit(state, engine)
        assert state.last_commit.kind == "snapshot"
    engine.close()


def test_a_state_that_does_not_continue_the_last_commit_is_written_whole(small_banksim, tmp_path):
    """A delta is only ever computed against the version it continues: another state (here an
    earlier one) is a snapshot, and loads as itself."""
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    engine = open_engine(None, lambda: importance, CONFIG, ChunkClock())
    states = []
    for index in range(3):
        fold_chunk(engine, transactions, index)
        states.append(engine.snapshot())
    state = StateStore(LocalStore(tmp_path))
    state.commit(states[2], CONFIG)
    state.commit(states[0], CONFIG)
    assert state.last_commit.kind == "snapshot"
    assert_same_state(StateStore(LocalStore(tmp_path)).load().state, states[0])
    engine.close()


KILL_BETWEEN_SNAPSHOT_AND_POINTER = textwrap.dedent(
    """
    import json, os, signal, sys
    from patternflow.engine.state import StateConflict, StateStore
    from patternflow.engine.store import LocalStore
    from patternflow.engine.stream import commit, open_engine
    from patternflow.ingest.parsing import read_importance, read_transactions
    from tests.unit.test_changelog_state import CONFIG

    class DyingAtTheThirdSnapshotsPointer(LocalStore):
        def replace(self, key, data, expected):
            manifest = json.loads(data) if key.endswith("CURRENT") else {"version": 0}
            if manifest["version"] > 2 and manifest["kind"] == "snapshot":
                os.kill(os.getpid(), signal.SIGKILL)  # its objects and manifest are written; CURRENT is not
            return super().replace(key, data, expected)

    transactions, importance = read_transactions(sys.argv[2]), read_importance(sys.argv[3])
    state = StateStore(DyingAtTheThirdSnapshotsPointer(sys.argv[1]), snapshot_every=3, deltas_per_snapshot=100)
    engine = open_engine(state, lambda: importance, CONFIG)
    for index in range(12):  # versions 1, 2 (snapshots), 3, 4 (deltas), 5 (snapshot: killed)
        engine.fold(index, transactions.slice(index * CONFIG.chunk_size, CONFIG.chunk_size))
        commit(state, engine)
    """
)


def test_a_kill_between_writing_a_snapshot_and_moving_the_pointer_keeps_the_committed_chain(small_banksim, tmp_path):
    """SIGKILL after a new snapshot's objects are written and before CURRENT names it: version
    4 (snapshot 2 and deltas 3, 4) stays current and loadable; the next commit continues from it,
    and pruning then removes the orphan snapshot but nothing a committed version needs."""
    state_dir = tmp_path / "state"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_BETWEEN_SNAPSHOT_AND_POINTER,
            str(state_dir),
            str(small_banksim.transactions),
            str(small_banksim.importance),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.getcwd(),
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    state = StateStore(LocalStore(state_dir), snapshot_every=3, deltas_per_snapshot=100)
    assert state.versions() == [1, 2, 3, 4, 5]
    orphan = json.loads((state_dir / "versions" / f"{5:010d}" / "manifest.json").read_bytes())
    assert (orphan["kind"], orphan["chain"]) == ("snapshot", [5])
    loaded = state.load()
    assert (loaded.version, loaded.state.chunks_folded) == (4, 4)

    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    engine = open_engine(state, lambda: importance, CONFIG)
    fold_chunk(engine, transactions, 4)
    assert commit(state, engine) == 6
    assert state.last_commit.kind == "snapshot"  # the chain 2-3-4 is as long as snapshot_every allows
    # 5 was never committed; 4's chain (2-3-4) stays as a fall-back on another snapshot; 1 goes
    assert state.versions() == [2, 3, 4, 6]
    for version, chunks_folded in ((4, 4), (6, 5)):
        (state_dir / "CURRENT").write_bytes((state_dir / "versions" / f"{version:010d}" / "manifest.json").read_bytes())
        assert StateStore(LocalStore(state_dir)).load().state.chunks_folded == chunks_folded
    engine.close()


class DyingStore(DiesAtWrite, LocalStore):
    """A folder store that dies at its ``die_at``-th write (a put, the pointer's replace or a
    pruning delete), as a process killed there would."""

    def __init__(self, root, die_at: int | None) -> None:
        super().__init__(root, die_at=die_at)


@st.composite
def sessions(draw):
    """Detection sessions: how many chunks each folds before it commits (or dies), how often it
    commits, its snapshot settings, and the write at which it is killed (None: it is not)."""
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "chunks": st.integers(1, 6),
                    "commit_every": st.integers(1, 3),
                    "snapshot_every": st.integers(1, 6),
                    "snapshot_bytes": st.sampled_from([0, 6_000, 1 << 30, 1 << 30]),
                    "die_at": st.none() | st.none() | st.integers(1, 40),
                }
            ),
            min_size=1,
            max_size=8,
        )
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(small_streams(), sessions())
def test_any_runs_commits_snapshots_and_kills_give_the_files_of_one_uninterrupted_replay(tmp_path_factory, stream, plan):
    transactions, importance, config = stream
    folder = tmp_path_factory.mktemp("changelog")
    expected = run_stream(transactions, importance, config, folder / "uninterrupted")
    chunks = -(-transactions.num_rows // config.chunk_size)
    outputs, clock = LocalStore(folder / "out"), ChunkClock()

    def session(settings: dict, finish: bool) -> None:
        store = DyingStore(folder / "state", settings["die_at"])
        state = StateStore(store, snapshot_every=settings["snapshot_every"], snapshot_bytes=settings["snapshot_bytes"])
        engine = open_engine(state, lambda: importance, config, clock)
        try:
            end = chunks if finish else min(chunks, engine.chunks_folded + settings["chunks"])
            for index in range(engine.chunks_folded, end):
                clock.chunk = index
                write_files(outputs, "", engine.fold(index, transactions.slice(index * config.chunk_size, config.chunk_size)).files)
                if (index + 1) % settings["commit_every"] == 0:
                    commit(state, engine)
            if finish and not engine.finished:
                clock.chunk = chunks
                write_files(outputs, "", engine.finish())
            commit(state, engine)
        except Killed:
            pass
        finally:
            engine.close()

    for settings_ in plan:
        session(settings_, finish=False)
    session({**plan[-1], "die_at": None}, finish=True)
    assert read_files(folder / "out") == expected
    uninterrupted = open_engine(None, lambda: importance, config, ChunkClock())
    for index in range(chunks):
        uninterrupted.fold(index, transactions.slice(index * config.chunk_size, config.chunk_size))
    uninterrupted.finish()
    loaded = StateStore(LocalStore(folder / "state")).load().state
    assert_same_state(loaded, uninterrupted.snapshot())
    uninterrupted.close()


def test_pending_rows_are_read_from_the_newest_link_of_the_chain(small_banksim, tmp_path):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    state = StateStore(LocalStore(tmp_path), snapshot_every=5, deltas_per_snapshot=100)
    engine = open_engine(state, lambda: importance, CONFIG, ChunkClock())
    for index in range(4):
        fold_chunk(engine, transactions, index)
        commit(state, engine)
    assert state.last_commit.kind == "delta"
    pending = StateStore(LocalStore(tmp_path)).read_pending()
    assert isinstance(pending, pa.Table) and pending.equals(engine.snapshot().pending)
    engine.close()


def test_a_store_that_commits_without_loading_keeps_the_current_version_as_a_fall_back(small_banksim, tmp_path):
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    engine = open_engine(None, lambda: importance, CONFIG, ChunkClock())
    states = []
    for index in range(2):
        fold_chunk(engine, transactions, index)
        states.append(engine.snapshot())
    StateStore(LocalStore(tmp_path)).commit(states[0], CONFIG)
    blind = StateStore(LocalStore(tmp_path))
    blind.commit(states[1], CONFIG)
    assert blind.last_commit.kind == "snapshot"  # it has no loaded state to diff against
    assert blind.versions() == [1, 2]  # version 1 stays: the newest committed versions are kept
    (tmp_path / "CURRENT").write_bytes((tmp_path / "versions" / f"{1:010d}" / "manifest.json").read_bytes())
    assert_same_state(StateStore(LocalStore(tmp_path)).load().state, states[0])
    engine.close()


class ListingThenRaced(LocalStore):
    """A folder store on which another writer commits right after this one lists the versions."""

    race = None

    def list(self, prefix):
        keys = super().list(prefix)
        if prefix.endswith("versions/") and self.race is not None:
            race, self.race = self.race, None
            race()
        return keys


def test_two_writers_racing_from_one_state_never_write_into_the_same_version(small_banksim, tmp_path):
    """Both pick the number after the last version; the second to claim it takes the next one,
    so the first's objects stay intact, and the second's commit fails at CURRENT as it must."""
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    engine = open_engine(StateStore(LocalStore(tmp_path)), lambda: importance, CONFIG, ChunkClock())
    fold_chunk(engine, transactions, 0)
    commit(StateStore(LocalStore(tmp_path)), engine)
    fast, slow = StateStore(LocalStore(tmp_path)), StateStore(ListingThenRaced(tmp_path))
    fast_state, slow_state = fast.load().state, slow.load().state
    fold_chunk(engine, transactions, 1)
    won = engine.snapshot()
    fold_chunk(engine, transactions, 2)
    lost = engine.snapshot()
    assert fast_state.chunks_folded == slow_state.chunks_folded == 1
    slow.store.race = lambda: fast.commit(won, CONFIG)
    with pytest.raises(StateConflict):
        slow.commit(lost, CONFIG)
    assert fast.last_commit.version == 2 and slow.versions() == [1, 2, 3]
    loaded = StateStore(LocalStore(tmp_path)).load()
    assert (loaded.version, loaded.skipped_versions) == (2, ())
    assert_same_state(loaded.state, won)
    engine.close()
