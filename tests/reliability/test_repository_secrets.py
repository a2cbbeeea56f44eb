"""No credential in the repository: every tracked file outside tests/ and .env.example (whose
values are empty placeholders) is scanned for what looks like a literal secret."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]

PATTERNS = {
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a quoted secret literal": re.compile(
        r"""(?i)(password|passwd|secret|token|api_key|access_key)\w*["']?\s*[:=]\s*["'](?![${<])[^"'\s]{4,}["']"""
    ),
    "a secret assigned in an environment file": re.compile(
        r"""(?m)^\s*(export\s+)?[A-Z_]*(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY|TOKEN)\s*[:=]\s*(?![$"'{<#\s])\S+"""
    ),
    "credentials in a URL": re.compile(r"""\b[a-z][a-z0-9+]*://[^\s:/@"']+:(?![$\{<])[^\s@/"']+@"""),
}

ALLOWED = {
    # the embedded S3 server accepts any credentials; these never leave the machine (launcher.py says so)
    ("include/patternflow/local/launcher.py", 'ACCESS_KEY = "embedded-s3-access-key"'),
    ("include/patternflow/local/launcher.py", 'SECRET_KEY = "embedded-s3-secret-key"'),
}


def findings(path: str, text: str) -> list[str]:
    found = []
    for what, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            if (path, match[0].strip()) not in ALLOWED:
                found.append(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: {what}")
    return found


def test_no_credential_is_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for path in tracked:
        if path.startswith("tests/") or path == ".env.example":
            continue
        try:
            text = (PROJECT / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        found += findings(path, text)
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "text",
    [
        "key = 'AKIA" + "ABCDEFGHIJKLMNOP'",
        '{"password": "hunter2x"}',
        "POSTGRES_PASSWORD=s3cretvalue",
        "sql_alchemy_conn = postgresql://airflow:s3cret@db/airflow",
        "-----BEGIN RSA " + "PRIVATE KEY-----",
    ],
)
def test_the_scan_recognises_a_planted_credential(text):
    """So that an empty result above means something."""
    assert findings("example.py", text)


@pytest.mark.parametrize(
    "text", ['"password": "${MINIO_ROOT_PASSWORD:?set it in .env}"', "POSTGRES_PASSWORD=", 'password = os.environ["PW"]']
)
def test_references_to_secrets_are_not_secrets(text):
    assert not findings("example.py", text)
