"""Merchant partitions: N engines over the merchants' rows write exactly one engine's files."""

from __future__ import annotations

import subprocess
import sys
import zlib

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patternflow.engine.config import DetectionConfig
from patternflow.engine.partitions import PartitionEngine, StreamFiles, partition_of, row_partitions, rows_of
from patternflow.engine.state import StateError, StateStore
from patternflow.engine.store import LocalStore
from patternflow.engine.stream import write_files
from patternflow.ingest.parsing import read_importance, read_transactions
from tests.helpers import ChunkClock, read_files, run_stream
from tests.strategies import small_streams


def run_partitioned(
    transactions: pa.Table, importance: pa.Table, config: DetectionConfig, out, partitions: int, state_dir=None, per_session=None
):
    """Every chunk through ``partitions`` partition engines and the stream's file cutter, with
    every state committed and reloaded each ``per_session`` chunks when ``state_dir`` is given."""
    clock, outputs = ChunkClock(), LocalStore(out)
    chunks = -(-transactions.num_rows // config.chunk_size)
    per_session = per_session or chunks + 1

    def states():
        if state_dir is None:
            return [None] * partitions, None
        store = LocalStore(state_dir)
        return [StateStore(store, f"partitions/{k}/") for k in range(partitions)], StateStore(store, "stream/")

    index = 0
    while True:
        partition_states, stream_state = states()
        engines = [PartitionEngine.open(s, lambda: importance, config, k, partitions, clock) for k, s in enumerate(partition_states)]
        stream = StreamFiles.open(stream_state, config)
        assert {e.chunks_folded for e in engines} == {stream.chunks_merged} == {index}
        end = min(chunks, index + per_session)
        for chunk_index in range(index, end):
            clock.chunk = chunk_index
            chunk = transactions.slice(chunk_index * config.chunk_size, config.chunk_size)
            results = [engine.fold(chunk_index, chunk) for engine in engines]
            assert sum(r.rows for r in results) == chunk.num_rows
            files, _ = stream.add_chunk(chunk_index, chunk.num_rows, [r.detections for r in results])
            write_files(outputs, "", files)
        index = end
        if index == chunks:
            clock.chunk = chunks
            write_files(outputs, "", stream.finish())
        if state_dir is not None:
            for engine, state in zip(engines, partition_states, strict=True):
                state.commit(engine.snapshot(), config)
            stream_state.commit(stream.snapshot(), config)
        for engine in engines:
            engine.close()
        if index == chunks:
            return read_files(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(small_streams(), st.integers(1, 6))
def test_any_number_of_partitions_writes_the_files_of_one_engine(tmp_path_factory, stream, partitions):
    transactions, importance, config = stream
    folder = tmp_path_factory.mktemp("partitions")
    expected = run_stream(transactions, importance, config, folder / "one")
    assert run_partitioned(transactions, importance, config, folder / "many", partitions) == expected


@pytest.mark.parametrize(("partitions", "per_session"), [(2, 1), (4, 3), (8, 5)])
def test_partitions_committed_and_resumed_write_the_files_of_one_engine(small_banksim, tmp_path, partitions, per_session):
    config = DetectionConfig(chunk_size=5_000, upgrade_min_merchant_transactions=5_000, child_min_transactions=60, rows_per_file=5)
    transactions = read_transactions(small_banksim.transactions)
    importance = read_importance(small_banksim.importance)
    expected = run_stream(transactions, importance, config, tmp_path / "one")
    assert len(expected) >= 3
    got = run_partitioned(transactions, importance, config, tmp_path / "many", partitions, tmp_path / "state", per_session)
    assert got == expected
    sizes = [StateStore(LocalStore(tmp_path / "state"), f"partitions/{k}/").load().state.pairs.num_rows for k in range(partitions)]
    assert all(sizes) and sum(sizes) > max(sizes)  # the pairs are spread over the partitions


def test_the_partition_of_a_merchant_is_crc32_of_its_name_in_every_process():
    names = ["'M1823072687'", "M348934600", "M1", "Ünïcode"]
    expected = [zlib.crc32(name.encode()) % 4 for name in names]
    assert [partition_of(name, 4) for name in names] == expected
    probe = f"from patternflow.engine.partitions import partition_of; print([partition_of(n, 4) for n in {names!r}])"
    for seed in ("0", "1", "random"):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={"PYTHONHASHSEED": seed}, check=True)
        assert out.stdout.strip() == str(expected)
    assert list(row_partitions(pa.chunked_array([names + names[:1]]), 4)) == [*expected, expected[0]]


def test_rows_of_keeps_each_row_in_exactly_one_partition():
    table = pa.table({"merchant": [f"M{i % 13}" for i in range(100)], "n": list(range(100))})
    parts = [rows_of(table, "merchant", k, 3) for k in range(3)]
    assert sorted(n for part in parts for n in part.column("n").to_pylist()) == list(range(100))
    for k, part in enumerate(parts):
        assert {partition_of(m, 3) for m in part.column("merchant").to_pylist()} <= {k}
    assert rows_of(table, "merchant", 0, 1) is table


def test_bad_partition_counts_are_refused():
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        partition_of("M1", 0)


def test_a_partition_resumed_under_other_thresholds_is_refused(small_banksim, tmp_path):
    config = DetectionConfig(chunk_size=5_000)
    importance = read_importance(small_banksim.importance)
    state = StateStore(LocalStore(tmp_path), "partitions/0/")
    engine = PartitionEngine.open(state, lambda: importance, config, 0, 2)
    state.commit(engine.snapshot(), config)
    engine.close()
    with pytest.raises(StateError, match="different settings"):
        PartitionEngine.open(state, lambda: importance, DetectionConfig(chunk_size=4_000), 0, 2)
