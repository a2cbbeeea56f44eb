"""The console command's S3 side: the embedded server on its own, and S3 errors as messages."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from patternflow.cli import main
from patternflow.pipeline.s3 import endpoint_client
from tests.helpers import free_port


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_s3_server_holds_the_bucket_until_stopped(stop_signal):
    """Started with SIGINT ignored, as a job in the background of a non-interactive shell (or under
    nohup) is, and as CI's jobs are: Python then never raises KeyboardInterrupt, and only a handler
    of the server's own stops it."""
    port = free_port()
    server = subprocess.Popen(
        ["sh", "-c", 'trap "" INT; exec "$0" "$@"', sys.executable, "-m", "patternflow.cli", "s3-server", "--port", str(port)]
        + ["--bucket", "dags-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = server.stdout.readline()
        assert f"http://127.0.0.1:{port}" in ready and "s3://dags-test" in ready, server.stderr.read()
        client = endpoint_client(f"http://127.0.0.1:{port}", access_key="any", secret_key="any-secret")
        client.put_object(Bucket="dags-test", Key="transaction_chunks/chunk_0.csv", Body=b"step\n")
        assert client.get_object(Bucket="dags-test", Key="transaction_chunks/chunk_0.csv")["Body"].read() == b"step\n"
    finally:
        server.send_signal(stop_signal)
        try:
            assert server.wait(timeout=30) == 0
        finally:
            server.kill()  # a server that did not stop must not outlive the test (no-op once it exited)
            server.communicate()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_s3_server_refuses_a_port_in_use(taken_port, capsys):
    assert main(["s3-server", "--port", str(taken_port)]) == 2
    assert f"port {taken_port} on 127.0.0.1 is already in use" in capsys.readouterr().err


def test_s3_server_refuses_a_port_taken_after_its_check(taken_port, capsys, monkeypatch):
    """Another program can take the port between the check and the bind: an error at once, not a
    wait for a server thread that died (run in a thread here, so that a wait fails the test)."""
    monkeypatch.setattr("patternflow.local.launcher.port_free", lambda port: True)
    answer = []
    command = threading.Thread(target=lambda: answer.append(main(["s3-server", "--port", str(taken_port)])), daemon=True)
    command.start()
    command.join(60)
    assert answer == [2], "s3-server still waiting for a server that could not bind its port"
    assert f"port {taken_port} on 127.0.0.1 is already in use" in capsys.readouterr().err


def test_an_s3_error_ends_a_command_with_a_message(s3_endpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    assert main(["report", "--out", str(tmp_path / "report.html"), "--endpoint-url", s3_endpoint, "--bucket", "no-such-bucket"]) == 2
    assert "patternflow report: S3: " in capsys.readouterr().err and not (tmp_path / "report.html").exists()


def test_missing_credentials_end_a_command_with_a_message(s3_endpoint, tmp_path):
    """In a process of its own: boto3 keeps the credentials it found in this one."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environ |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    environ["AWS_EC2_METADATA_DISABLED"] = "true"
    command = [sys.executable, "-m", "patternflow.cli", "reset", "--endpoint-url", s3_endpoint, "--bucket", "any-bucket"]
    reset = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60)
    assert reset.returncode == 2, reset.stderr
    assert reset.stderr.startswith("patternflow reset: S3: ") and "credentials" in reset.stderr
