"""Versioned state: atomic commits, checksums, fall-back to the last intact version, pruning."""

from __future__ import annotations

import json

import pytest

from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import DetectionEngine
from patternflow.engine.state import StateConflict, StateError, StateStore
from patternflow.engine.store import LocalStore
from patternflow.engine.stream import open_engine
from tests.helpers import importance_table, transactions_table

CONFIG = DetectionConfig(chunk_size=2, child_min_transactions=2)


def engine_after(chunks: int) -> DetectionEngine:
    engine = DetectionEngine.start(importance_table([("C1", "M1", "2.50")]), CONFIG)
    for index in range(chunks):
        engine.fold(index, transactions_table([("C1", "M1", "F", "1.00"), (f"C{index + 2}", "M1", "M", "7.25")]))
    return engine


def test_commit_and_load_round_trip(tmp_path):
    state = StateStore(LocalStore(tmp_path), prefix="state")
    assert state.load() is None
    engine = engine_after(3)
    version = state.commit(engine.snapshot(), CONFIG)
    loaded = state.load()
    assert loaded.version == version == 1
    assert loaded.config == CONFIG
    restored = loaded.state
    original = engine.snapshot()
    assert restored.pairs.equals(original.pairs)
    assert restored.emitted.equals(original.emitted)
    assert restored.pending.equals(original.pending)
    assert (restored.chunks_folded, restored.rows_folded, restored.detections) == (3, 6, 1)
    assert (tmp_path / "state" / "CURRENT").is_file()


def test_only_the_newest_versions_are_kept(tmp_path):
    state = StateStore(LocalStore(tmp_path), keep=3, snapshot_every=1)
    engine = engine_after(1)
    for _ in range(6):
        state.commit(engine.snapshot(), CONFIG)
    assert state.versions() == [4, 5, 6]
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["0000000004", "0000000005", "0000000006"]


def test_only_what_the_newest_versions_need_is_kept(tmp_path):
    """A delta needs its chain back to the snapshot, and a load must be able to fall back past a
    damaged snapshot: version 2 is a snapshot again (version 1 would be the only fall-back of a
    chain on it), then chains of three. After version 7 the newest three versions (7, 6, 5) are
    the chain 5 -> 6 -> 7, and the newest version on another snapshot, 4 (chain 2 -> 3 -> 4),
    stays; version 1 goes."""
    state = StateStore(LocalStore(tmp_path), keep=3, snapshot_every=3, deltas_per_snapshot=100)
    kinds = []
    for chunks in range(1, 8):
        state.commit(engine_after(chunks).snapshot(), CONFIG)
        kinds.append(state.last_commit.kind)
    assert kinds == ["snapshot", "snapshot", "delta", "delta", "snapshot", "delta", "delta"]
    assert state.versions() == [2, 3, 4, 5, 6, 7]
    for version in (7, 6, 5, 4):
        manifest = (tmp_path / "versions" / f"{version:010d}" / "manifest.json").read_bytes()
        (tmp_path / "CURRENT").write_bytes(manifest)
        assert StateStore(LocalStore(tmp_path)).load().state.chunks_folded == version


@pytest.mark.parametrize("damaged", ["the snapshot", "a delta in the middle"])
def test_a_damaged_object_of_the_current_chain_falls_back_to_a_version_on_another_snapshot(tmp_path, caplog, damaged):
    state = StateStore(LocalStore(tmp_path), keep=3, snapshot_every=4, deltas_per_snapshot=100)
    for chunks in range(1, 8):  # versions 1 (snapshot), 2 (snapshot), 3, 4, 5 (deltas), 6 (snapshot), 7 (delta)
        state.commit(engine_after(chunks).snapshot(), CONFIG)
    version = 6 if damaged == "the snapshot" else 3
    target = tmp_path / "versions" / f"{version:010d}" / "pairs.parquet"
    if damaged == "a delta in the middle":  # the current chain is 6 -> 7: damage 3, of the chain 2 -> 5 kept
        (tmp_path / "CURRENT").write_bytes((tmp_path / "versions" / f"{5:010d}" / "manifest.json").read_bytes())
    target.write_bytes(target.read_bytes()[:-40])
    loaded = StateStore(LocalStore(tmp_path)).load()
    assert loaded.state.chunks_folded == (5 if damaged == "the snapshot" else 2)
    assert "is damaged" in caplog.text


def test_a_commit_knows_the_fewest_chunks_of_the_versions_a_load_may_fall_back_to(tmp_path):
    state = StateStore(LocalStore(tmp_path), keep=3, snapshot_every=4, deltas_per_snapshot=100)
    for chunks in range(1, 12):
        state.commit(engine_after(chunks).snapshot(), CONFIG)
        assert state.last_commit.fewest_chunks_kept == min(chunks_of_versions_present(tmp_path))
    assert min(chunks_of_versions_present(tmp_path)) < 11 - 2  # a chain's snapshot kept well behind the newest versions


def chunks_of_versions_present(root) -> list[int]:
    return [json.loads((folder / "manifest.json").read_text())["chunks_folded"] for folder in (root / "versions").iterdir()]


def test_a_kept_version_whose_chunks_no_manifest_recorded_makes_them_unknown(tmp_path):
    state = StateStore(LocalStore(tmp_path))
    state.commit(engine_after(1).snapshot(), CONFIG)
    state.commit(engine_after(2).snapshot(), CONFIG)
    current = tmp_path / "CURRENT"
    manifest = json.loads(current.read_text())
    del manifest["snapshot_chunks"], manifest["kept_chunks"]  # as written before they were recorded
    current.write_text(json.dumps(manifest))
    later = StateStore(LocalStore(tmp_path))
    later.load()
    later.commit(engine_after(3).snapshot(), CONFIG)
    assert later.last_commit.fewest_chunks_kept is None  # version 1, kept, is not known
    for chunks in (4, 5, 6):
        later.commit(engine_after(chunks).snapshot(), CONFIG)
    assert 1 not in chunks_of_versions_present(tmp_path)  # once it is no longer kept
    assert later.last_commit.fewest_chunks_kept == min(chunks_of_versions_present(tmp_path))


def test_a_damaged_version_falls_back_to_the_previous_one(tmp_path, caplog):
    state = StateStore(LocalStore(tmp_path))
    state.commit(engine_after(1).snapshot(), CONFIG)
    state.commit(engine_after(2).snapshot(), CONFIG)
    pairs = tmp_path / "versions" / "0000000002" / "pairs.parquet"
    pairs.write_bytes(pairs.read_bytes()[:-40])  # truncated
    loaded = state.load()
    assert loaded.version == 1 and loaded.skipped_versions == (2,)
    assert loaded.state.chunks_folded == 1
    assert "state version 2 is damaged" in caplog.text


def test_every_version_damaged_is_an_error(tmp_path):
    state = StateStore(LocalStore(tmp_path))
    state.commit(engine_after(1).snapshot(), CONFIG)
    (tmp_path / "versions" / "0000000001" / "emitted.parquet").write_bytes(b"garbage")
    with pytest.raises(StateError, match="no intact state version"):
        state.load()


def test_an_uncommitted_newer_version_is_ignored(tmp_path):
    """A crash after writing a version's objects but before CURRENT: the old version stays current."""
    state = StateStore(LocalStore(tmp_path))
    state.commit(engine_after(1).snapshot(), CONFIG)
    current = (tmp_path / "CURRENT").read_bytes()
    state.commit(engine_after(2).snapshot(), CONFIG)
    (tmp_path / "CURRENT").write_bytes(current)  # as if the crash came before the pointer moved
    assert state.load().state.chunks_folded == 1
    assert state.commit(engine_after(3).snapshot(), CONFIG) == 3  # and the next commit does not reuse 2


def test_resuming_with_other_settings_is_refused(tmp_path):
    state = StateStore(LocalStore(tmp_path))
    state.commit(engine_after(1).snapshot(), CONFIG)
    with pytest.raises(StateError, match="different settings"):
        open_engine(state, lambda: importance_table([]), DetectionConfig(chunk_size=3))


def test_keys_cannot_escape_the_store(tmp_path):
    with pytest.raises(ValueError, match="escapes"):
        LocalStore(tmp_path / "a").put("../b", b"x")


@pytest.mark.parametrize("current", [b"[]", b'{"version": "7"}', b"{}"])
def test_a_current_pointer_without_a_version_number_counts_as_damaged(tmp_path, current, caplog):
    state = StateStore(LocalStore(tmp_path))
    state.commit(engine_after(1).snapshot(), CONFIG)
    (tmp_path / "CURRENT").write_bytes(current)
    assert state.load().state.chunks_folded == 1
    assert "CURRENT is damaged" in caplog.text


def test_loading_an_intact_state_reads_only_its_own_objects(tmp_path):
    """The normal path lists nothing: CURRENT names the version and its objects."""
    listed = []

    class Listing(LocalStore):
        def list(self, prefix):
            listed.append(prefix)
            return super().list(prefix)

    state = StateStore(Listing(tmp_path))
    state.commit(engine_after(1).snapshot(), CONFIG)
    listed.clear()
    assert state.load().state.chunks_folded == 1
    assert listed == []


@pytest.mark.parametrize("started", [False, True])
def test_of_two_runs_racing_from_the_same_state_only_the_first_commit_counts(tmp_path, started):
    """Two detection runs that loaded the same state (or both found none): the second commit is
    refused, CURRENT keeps the first's state, and the refused run changed nothing current."""
    if started:
        StateStore(LocalStore(tmp_path)).commit(engine_after(1).snapshot(), CONFIG)
    first, second = StateStore(LocalStore(tmp_path)), StateStore(LocalStore(tmp_path))
    assert (first.load() is None) == (second.load() is None) == (not started)
    winner = first.commit(engine_after(2).snapshot(), CONFIG)
    with pytest.raises(StateConflict, match="another detection run committed meanwhile"):
        second.commit(engine_after(3).snapshot(), CONFIG)
    loaded = StateStore(LocalStore(tmp_path)).load()
    assert (loaded.version, loaded.state.chunks_folded) == (winner, 2)
    assert first.commit(engine_after(4).snapshot(), CONFIG) == winner + 2  # the refused number is not reused


def test_a_store_that_never_loaded_commits_over_the_current_state(tmp_path):
    StateStore(LocalStore(tmp_path)).commit(engine_after(1).snapshot(), CONFIG)
    assert StateStore(LocalStore(tmp_path)).commit(engine_after(2).snapshot(), CONFIG) == 2
