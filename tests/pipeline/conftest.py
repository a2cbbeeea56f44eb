"""Fixtures shared by the pipeline tests."""

from __future__ import annotations

import pytest

from patternflow.replay import replay
from tests.helpers import lively_config, read_files
from tests.pipeline.test_detector import CHUNK, without_times


@pytest.fixture(scope="module")
def replayed(small_banksim, tmp_path_factory) -> dict[str, list[list[str]]]:
    out = tmp_path_factory.mktemp("replay")
    replay(small_banksim.transactions, small_banksim.importance, out, lively_config(CHUNK))
    files = {name: without_times(text) for name, text in read_files(out).items()}
    assert len(files) > 2 and {row[0] for rows in files.values() for row in rows} == {"PatId1", "PatId2", "PatId3"}
    return files
