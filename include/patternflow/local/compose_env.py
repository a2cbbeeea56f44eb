"""``make compose-env``: write the compose deployment's ``.env`` from ``.env.example`` with every
secret freshly generated, so that ``make compose-env && docker compose up`` is the whole set-up.

Every empty value of ``.env.example`` is a secret each deployment must make its own; the rest
(ports, bucket, user id) is copied as it stands, comments included. An existing ``.env`` is never
overwritten: its Fernet key encrypts what the database already holds, and a new one would make
that unreadable.

Standard library only, so that it runs with any Python 3 before the project's virtualenv exists:
``python3 include/patternflow/local/compose_env.py [--example PATH] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from pathlib import Path

_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def fernet_key() -> str:
    """What ``cryptography.fernet.Fernet.generate_key()`` returns: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def secret_for(name: str) -> str:
    """A fresh value for the variable ``name``: a Fernet key where Airflow needs one, else a token
    of letters, digits, ``-`` and ``_`` (safe inside the database URL and the connection's JSON)."""
    return fernet_key() if "FERNET" in name else secrets.token_urlsafe(24)


def fill_secrets(example: str) -> tuple[str, list[str]]:
    """The text of ``.env.example`` with each empty ``NAME=`` given a fresh secret, and those names."""
    lines, filled = [], []
    for line in example.splitlines(keepends=True):
        match = _ASSIGNMENT.match(line.rstrip("\r\n"))
        if match and match["value"].strip() == "":
            name = match["name"]
            line = f"{name}={secret_for(name)}\n"
            filled.append(name)
        lines.append(line)
    return "".join(lines), filled


def write_env(example: Path, out: Path) -> list[str]:
    """Write ``out`` (readable by its owner only) from ``example``; the names of the secrets made.

    Raises FileExistsError, leaving ``out`` untouched, when it already exists."""
    text, filled = fill_secrets(example.read_text())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # O_EXCL: never clobber a .env
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return filled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write .env for docker-compose.yaml from .env.example with fresh secrets.")
    parser.add_argument("--example", type=Path, default=Path(".env.example"), help="the template (default: .env.example)")
    parser.add_argument("--out", type=Path, default=Path(".env"), help="the file to write (default: .env); never overwritten")
    args = parser.parse_args(argv)
    try:
        filled = write_env(args.example, args.out)
    except FileExistsError:
        print(
            f"{args.out} exists already; it is left as it is (its Fernet key encrypts what the database holds). "
            f"Remove it first to start a deployment afresh.",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"cannot write {args.out} from {args.example}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} with fresh {', '.join(filled)}; next: docker compose up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
