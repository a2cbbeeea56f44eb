"""Native PostgreSQL and Redis for the distributed topology, on 127.0.0.1, under the run folder.

The same services as the docker-compose deployment, started from Debian's packages: a private
PostgreSQL 15 cluster as Airflow's metadata database and a Redis server as the Celery broker.
Neither touches a system-wide service or file; both keep their data in the project's ignored
``.run/`` folder. PostgreSQL refuses to run as root, so as root its commands run as the
``postgres`` system user, which then owns the cluster folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from patternflow.errors import PatternflowError

DATABASE = "airflow"
ROLE = "airflow"


class ServiceError(PatternflowError):
    """A native service is missing or failed to start."""


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise ServiceError(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return candidates[-1]


def redis_bin() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise ServiceError("redis-server not found: install Redis (Debian: apt-get install redis-server)")
    return found


def _as_postgres_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _hand_to_postgres_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
        for parent in path.parents:  # the server must be able to reach its folder
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)


def init_postgres(folder: Path) -> Path:
    """Create the private cluster on first use; returns its data folder."""
    data = folder / "data"
    if (data / "PG_VERSION").is_file():
        return data
    folder.mkdir(parents=True, exist_ok=True)
    _hand_to_postgres_user(folder)
    command = [postgres_bin("initdb"), "-D", str(data), "-U", ROLE, "--auth=trust", "--encoding=UTF8", "--no-instructions"]
    result = subprocess.run(_as_postgres_user(command), capture_output=True, text=True)
    if result.returncode:
        raise ServiceError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
    return data


def postgres_command(data: Path, port: int) -> list[str]:
    """The server in the foreground, TCP on 127.0.0.1 only, its socket in the cluster folder."""
    return _as_postgres_user(
        [postgres_bin("postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(data.parent), "-c", "max_connections=200"]
    )


def create_database(port: int) -> None:
    """A new, empty ``airflow`` database, replacing the one of an earlier run.

    Each run streams into a new in-memory S3, so the previous run's DAG runs describe a stream
    that is gone; worse, its queued Celery tasks would be "adopted" from a broker that no longer
    has them and block their DAGs until they time out.
    """
    psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", ROLE, "-d", "postgres", "-tAc"]
    for statement in (f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}"):
        result = subprocess.run([*psql, statement], capture_output=True, text=True)
        if result.returncode:
            raise ServiceError(f"PostgreSQL on port {port}: {statement} failed: {result.stderr.strip()}")


def postgres_ready(port: int) -> bool:
    result = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True)
    return result.returncode == 0


def database_url(port: int) -> str:
    return f"postgresql+psycopg2://{ROLE}@127.0.0.1:{port}/{DATABASE}"


def redis_command(folder: Path, port: int) -> list[str]:
    """A broker that keeps nothing on disk: queued tasks do not outlive a run."""
    folder.mkdir(parents=True, exist_ok=True)
    return [redis_bin(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "", "--appendonly", "no"]


def redis_ready(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
