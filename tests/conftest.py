"""Shared fixtures: generated BankSim data, made once per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from patternflow.ingest.generate import Generated, generate

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


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's) on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    # Port 0: the server binds a free port itself. (A port found free and then released could be
    # taken before the server binds it, and ThreadedMotoServer.start() then waits forever.)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str):
    from patternflow.pipeline.s3 import endpoint_client

    return endpoint_client(s3_endpoint, access_key="test", secret_key="test")


@pytest.fixture
def bucket(s3_client) -> str:
    """A fresh, empty bucket for one test."""
    name = f"pf-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name
