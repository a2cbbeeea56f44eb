"""Shared fixtures: generated BankSim data, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from patternflow.generate import Generated, generate

HEADER = "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud"
IMPORTANCE_HEADER = "Source,Target,Weight,typeTrans,fraud"


@pytest.fixture(scope="session")
def full_banksim(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """The full-size synthetic BankSim (594,643 rows), seed 0."""
    return generate(tmp_path_factory.mktemp("banksim-full"), seed=0)


@pytest.fixture(scope="session")
def small_banksim(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """A reduced synthetic BankSim (60,000 rows), seed 7: fast enough for many tests."""
    return generate(tmp_path_factory.mktemp("banksim-small"), seed=7, rows=60_000)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path
