"""Arrow columns through their buffers: the same values pyarrow's own conversions give, and no
pandas import anywhere on the engine's paths (the reason they exist)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from patternflow.ingest import columns
from tests.helpers import lively_config

NUMERIC = [pa.int8(), pa.uint8(), pa.int32(), pa.int64(), pa.float64()]


@given(st.lists(st.integers(-128, 127), max_size=40), st.sampled_from(NUMERIC[:1] + NUMERIC[2:]))
def test_numbers_convert_as_pyarrow_converts_them(values: list[int], type: pa.DataType):
    expected = pa.array(values, type)
    assert columns.from_numpy(np.array(values, dtype=np.int64), type).equals(expected)
    assert columns.array(values, type).equals(expected)
    assert columns.to_numpy(expected).tolist() == values


@given(st.lists(st.text(max_size=8), max_size=30))
def test_strings_convert_as_pyarrow_converts_them(values: list[str]):
    converted = columns.strings(values)
    converted.validate(full=True)
    assert converted.equals(pa.array(values, pa.string()))


def test_slices_chunks_and_strided_arrays():
    base = pa.array(range(10), pa.int32())
    assert columns.to_numpy(base.slice(3, 4)).tolist() == [3, 4, 5, 6]
    chunked = pa.chunked_array([base.slice(0, 2), base.slice(7)])
    assert columns.to_numpy(chunked).tolist() == [0, 1, 7, 8, 9]
    assert columns.to_numpy(pa.chunked_array([], pa.int32())).tolist() == []
    strided = np.arange(10, dtype=np.int64)[::3]
    assert columns.from_numpy(strided).to_pylist() == [0, 3, 6, 9]


def test_what_it_does_not_convert_is_refused():
    with pytest.raises(ValueError, match="nulls"):
        columns.to_numpy(pa.array([1, None], pa.int64()))
    with pytest.raises(TypeError, match="numeric"):
        columns.to_numpy(pa.array(["a"]))
    with pytest.raises(TypeError, match="1-d numeric"):
        columns.from_numpy(np.array([True, False]))
    with pytest.raises(TypeError, match="expected int64"):
        columns.array(pa.array([1], pa.int32()), pa.int64())
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    with pytest.raises(ValueError, match="do not match"):
        columns.table({"b": ["x"], "a": [1]}, schema)


def test_table_and_empty_table():
    schema = pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.uint8())])
    table = columns.table({"a": np.array([1, 2]), "b": ["x", "é"], "c": pa.array([3, 4], pa.uint8())}, schema)
    assert table.to_pylist() == [{"a": 1, "b": "x", "c": 3}, {"a": 2, "b": "é", "c": 4}]
    assert columns.empty(schema).equals(schema.empty_table())


_NO_PANDAS = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from patternflow.cli import main
    from patternflow.engine.config import DetectionConfig
    from patternflow.pipeline.detector import detect
    from patternflow.pipeline.producer import produce
    from patternflow.pipeline.settings import PipelineSettings
    from patternflow.pipeline.sources import source_opener
    from patternflow.engine.store import LocalStore

    data, work, chunk = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    config = DetectionConfig(**json.loads(sys.argv[4]))
    replay = ["replay", "--transactions", str(data / "transactions.csv"), "--importance", str(data / "CustomerImportance.csv"),
              "--chunk-size", str(chunk)]
    assert main([*replay, "--out", str(work / "out"), "--state", str(work / "state")]) == 0
    assert main([*replay, "--out", str(work / "out"), "--state", str(work / "state")]) == 0  # resumes: reads the state
    settings = PipelineSettings(bucket="stream", transactions=str(data / "transactions.csv"),
                                importance=str(data / "CustomerImportance.csv"), chunk_size=chunk, max_chunks_per_run=5)
    store = LocalStore(work / "bucket")
    produce(store, settings, source_opener(lambda: None), 0.0, fast=True)
    runs = [detect(store, settings, config) for _ in range(2)]  # the second starts from the first's state
    assert runs[0].chunks and runs[1].chunks, runs
    print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "pandas")))
    """
)


def test_replay_and_detection_runs_never_import_pandas(small_banksim, tmp_path):
    chunk = 5_000
    config = lively_config(chunk).to_json()
    run = subprocess.run(
        [sys.executable, "-c", _NO_PANDAS, str(small_banksim.transactions.parent), str(tmp_path), str(chunk), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []


def test_decimal_units_are_the_unscaled_integers_when_they_fit_in_64_bits():
    from decimal import Decimal

    values = [Decimal("-4.55"), Decimal("0.00"), Decimal("92233720368547758.07")]
    column = pa.chunked_array([pa.array(values[:1], pa.decimal128(38, 2)), pa.array(values[1:], pa.decimal128(38, 2)).slice(0)])
    assert columns.decimal_units(column).tolist() == [-455, 0, 2**63 - 1]
    assert columns.decimal_units(pa.chunked_array([pa.array([Decimal("92233720368547758.08")], pa.decimal128(38, 2))])) is None
    assert columns.decimal_units(pa.chunked_array([pa.array(values, pa.decimal128(38, 2)).slice(1, 1)])).tolist() == [0]
    assert columns.decimal_units(pa.chunked_array([], pa.decimal128(12, 2))).tolist() == []
