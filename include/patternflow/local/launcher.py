"""``patternflow run``: the whole pipeline on one machine, with nothing but this virtualenv.

It starts an S3-compatible server on 127.0.0.1 (moto's server, in memory), creates the bucket,
starts Airflow (``airflow standalone``: SQLite, LocalExecutor, api-server, scheduler,
dag-processor, triggerer) with only this project's DAGs, unpaused, and watches the stream on S3:
chunks uploaded and processed, detections per pattern, lag. When the stream is complete it
copies the detection files to the output folder, since the in-memory S3 goes away with it.

With ``--s3-endpoint URL`` it uses that S3 endpoint instead of starting its own server (the
credentials then come from ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, or boto's usual
chain), and creates the bucket there if it is missing.

Every process it starts runs in a process group of its own, and every group is stopped on the
way out (Ctrl-C, SIGTERM, the end of the stream with ``--exit-when-done``, or an error). The
building blocks (``Processes``, ``start_s3``, ``airflow_environment``, ``migrate``,
``start_components``, ``wait_for_airflow``) also let a test start Airflow's components one by
one and kill or restart any of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from patternflow.console import console_for, detection_figures, figures_table
from patternflow.errors import PatternflowError
from patternflow.pipeline.s3 import S3Store, endpoint_client
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.status import StreamProgress, read_chunk_metrics, read_progress

DAG_IDS = ("transaction_producer", "pattern_detection")
# The embedded server accepts any credentials; these never leave this machine. They are not the
# project's name: Airflow masks a connection's secrets wherever they appear in task logs.
ACCESS_KEY = "embedded-s3-access-key"
SECRET_KEY = "embedded-s3-secret-key"


class LaunchError(PatternflowError):
    """The local stack could not start (a port in use, a component that died)."""


@dataclass(frozen=True)
class LaunchOptions:
    data: Path
    output: Path
    project: Path
    exit_when_done: bool = False
    s3_port: int = 5055
    ui_port: int = 8080
    timeout: float | None = None
    """With exit_when_done: give up (exit 1) if the stream is not complete after this many seconds."""
    chunk_size: int | None = None
    tick_seconds: float | None = None
    metrics: Path | None = None
    """Where to write every chunk's timings (JSON) when the stream completes."""
    distributed: bool = False
    """PostgreSQL, Redis, CeleryExecutor and separate Airflow components instead of standalone."""
    workers: int = 2
    worker_concurrency: int = 4
    """With distributed: how many tasks each Celery worker runs at once (its --concurrency)."""
    partitions: int | None = None
    """Merchant partitions (PATTERNFLOW_PARTITIONS) for every Airflow component; None: the
    environment's setting, else 1. The detection DAG is parsed with it, so all must agree."""
    pg_port: int = 5433
    redis_port: int = 6380
    s3_endpoint: str | None = None
    """An S3 endpoint to use instead of starting the embedded server (then s3_port is unused)."""
    airflow_home: Path | None = None
    """AIRFLOW_HOME and the logs; default .airflow/ (distributed: .run/airflow/) in the project."""

    @property
    def home(self) -> Path:
        """AIRFLOW_HOME and the logs of every process started."""
        if self.airflow_home:
            return self.airflow_home
        return self.project / (".run" / Path("airflow") if self.distributed else Path(".airflow"))

    def worker_log_port(self, number: int) -> int:
        return 8792 + number

    def ports(self) -> list[tuple[int, str]]:
        ports = [(self.ui_port, "the Airflow UI (--ui-port)")]
        if not self.s3_endpoint:
            ports.insert(0, (self.s3_port, "the S3 server (--s3-port)"))
        if self.distributed:
            ports += [(self.pg_port, "PostgreSQL (--pg-port)"), (self.redis_port, "Redis (--redis-port)")]
            ports += [(self.worker_log_port(n), f"Celery worker {n}'s log server") for n in range(1, self.workers + 1)]
        return ports


def find_project(start: Path | None = None) -> Path:
    """The project folder: the nearest folder up from ``start`` (or the cwd) that holds ``dags/``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dags").is_dir() and (folder / "include" / "patternflow").is_dir():
            return folder
    package_root = Path(__file__).resolve().parents[3]
    if (package_root / "dags").is_dir():
        return package_root
    raise LaunchError(f"no patternflow project (a folder with dags/ and include/patternflow/) at or above {here}")


def run(options: LaunchOptions, out: IO[str] = sys.stdout) -> int:
    """Start everything, watch the stream, stop everything; the process's exit code."""
    _ensure_data(options.data, out)
    for port, what in options.ports():
        if not port_free(port):
            raise LaunchError(
                f"port {port} on 127.0.0.1 is already in use; it is needed for {what}. Stop what uses it or pick another port."
            )
    options.home.mkdir(parents=True, exist_ok=True)
    settings = PipelineSettings.resolve({}, environ=_pipeline_environment(options))
    stop = install_signal_handlers()
    with processes(options.home, stop) as started:
        try:
            api, password, client = _start(options, settings, started, out)
        except Stopped:
            print("stopping ...", file=out, flush=True)
            return 130
        print(f"Airflow UI: {api}  (login: admin / {password})", file=out, flush=True)
        print(f"Pattern detections page: {api}/plugin/pattern-detections", file=out, flush=True)
        print("the producer and the detector run by themselves; Ctrl-C stops everything\n", file=out, flush=True)
        return _watch(options, settings, S3Store(client, settings.bucket), api, password, stop, started, out)


def _start(options: LaunchOptions, settings: PipelineSettings, started: Processes, out: IO[str]) -> tuple[str, str, Any]:
    """S3, then Airflow: the UI's address, the admin password and an S3 client."""
    endpoint, client = start_s3(options, settings, started, out)
    env = airflow_environment(options, endpoint)
    if settings.partitions > 1:
        print(f"detection over {settings.partitions} merchant partitions, one mapped task each", file=out, flush=True)
    if options.distributed:
        _start_distributed(options, env, started, out)
    else:
        print("starting Airflow standalone (the first start takes a minute) ...", file=out, flush=True)
        (options.home / "airflow.db").unlink(missing_ok=True)  # runs of an earlier stream, whose S3 is gone
        started.start("standalone", ["airflow", "standalone"], env)
    api, password = wait_for_airflow(options, started)
    return api, password, client


def start_s3(options: LaunchOptions, settings: PipelineSettings, started: Processes, out: IO[str]) -> tuple[str, Any]:
    """The embedded S3 server (or the ``--s3-endpoint``) with the bucket in it: its URL and a client."""
    endpoint = options.s3_endpoint or f"http://127.0.0.1:{options.s3_port}"
    access_key, secret_key = s3_credentials(options)
    client = endpoint_client(endpoint, access_key=access_key, secret_key=secret_key)
    if options.s3_endpoint:
        print(f"using the S3 endpoint {endpoint}", file=out, flush=True)
        try:
            client.list_buckets()
        except Exception as exc:  # whatever boto says (no credentials, refused, denied) is the message
            raise LaunchError(f"the S3 endpoint {endpoint} cannot be used: {exc}") from None
    else:
        print(f"starting the S3 server on {endpoint} ...", file=out, flush=True)
        started.start("s3-server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(options.s3_port)])
        wait_until(lambda: _s3_ready(client), 30, f"the S3 server did not start; see {options.home}/s3-server.log", started)
    if settings.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=settings.bucket)
        print(f"bucket s3://{settings.bucket} created", file=out, flush=True)
    return endpoint, client


def s3_credentials(options: LaunchOptions) -> tuple[str | None, str | None]:
    """The embedded server's throwaway pair; for ``--s3-endpoint``, the environment's (None: boto's chain)."""
    if not options.s3_endpoint:
        return ACCESS_KEY, SECRET_KEY
    return os.environ.get("AWS_ACCESS_KEY_ID") or None, os.environ.get("AWS_SECRET_ACCESS_KEY") or None


COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
"""Airflow's long-running components, each its own process (``airflow standalone`` runs them all)."""


def migrate(env: dict[str, str], home: Path) -> None:
    """Create or upgrade Airflow's metadata database (``airflow db migrate``)."""
    with (home / "migrate.log").open("ab") as log:
        if subprocess.run(["airflow", "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
            raise LaunchError(f"airflow db migrate failed; see {home}/migrate.log")


def start_components(env: dict[str, str], started: Processes, components: Sequence[str] = COMPONENTS) -> None:
    """``airflow <component>`` for each, its output in ``<component>.log``."""
    for component in components:
        started.start(component, ["airflow", component], env)


def wait_for_airflow(options: LaunchOptions, started: Processes) -> tuple[str, str]:
    """Wait until the API server answers; its URL and the admin password."""
    api = f"http://127.0.0.1:{options.ui_port}"
    wait_until(lambda: _http_ok(f"{api}/api/v2/monitor/health"), 240, f"Airflow did not start; see the logs in {options.home}", started)
    return api, _admin_password(options.home)


def _start_distributed(options: LaunchOptions, env: dict[str, str], started: Processes, out: IO[str]) -> None:
    """PostgreSQL, Redis, then Airflow's components one by one with two Celery workers."""
    from patternflow.local import services

    run_dir = options.project / ".run"
    print(f"starting PostgreSQL on 127.0.0.1:{options.pg_port} and Redis on 127.0.0.1:{options.redis_port} ...", file=out, flush=True)
    data = services.init_postgres(run_dir / "postgres")
    started.start("postgres", services.postgres_command(data, options.pg_port))
    wait_until(lambda: services.postgres_ready(options.pg_port), 60, f"PostgreSQL did not start; see {options.home}/postgres.log", started)
    services.create_database(options.pg_port)
    started.start("redis", services.redis_command(run_dir / "redis", options.redis_port))
    wait_until(lambda: services.redis_ready(options.redis_port), 30, f"Redis did not start; see {options.home}/redis.log", started)

    print("migrating Airflow's database ...", file=out, flush=True)
    migrate(env, options.home)
    print(f"starting Airflow: {', '.join(COMPONENTS)} and {options.workers} Celery workers ...", file=out, flush=True)
    start_components(env, started)
    for number in range(1, options.workers + 1):
        worker_env = env | {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(options.worker_log_port(number))}
        command = ["airflow", "celery", "worker", "--celery-hostname", f"worker{number}@%h"]
        command += ["--concurrency", str(options.worker_concurrency)]
        started.start(f"worker{number}", command, worker_env)


def _watch(options, settings, store, api, password, stop, started, out) -> int:
    deadline = time.monotonic() + options.timeout if options.timeout else None
    began = time.time()
    exported = False
    # closed on any way out, an error's too: a live display hides the cursor until it is closed
    with contextlib.closing(_display(out)) as display:
        while not stop.is_set():
            for process in started:
                if process.poll() is not None:
                    raise LaunchError(f"{' '.join(process.args[:3])} exited with code {process.returncode}; see the logs in {options.home}")
            progress = read_progress(store, settings, count_uploads=True)
            metrics = read_chunk_metrics(store, settings) if progress.chunks_folded else []
            display.show(progress, metrics)
            failed = _failed_runs(api, password, began)
            if failed:
                display.close()
                print(f"stream failed: {failed}; see the task logs in the UI", file=out, flush=True)
                if options.exit_when_done:
                    return 1
            if progress.finished and not exported:
                display.close()
                files = export(store, settings, options.output)
                _summary(progress, metrics, files, options.output, out)
                if options.metrics:
                    options.metrics.write_text(json.dumps(metrics, indent=1))
                exported = True
                if options.exit_when_done:
                    return 0
                print("the stream is complete; the UI stays up until Ctrl-C", file=out, flush=True)
            if deadline and time.monotonic() > deadline:
                display.close()
                print(f"the stream did not complete within {options.timeout:.0f} s", file=out, flush=True)
                return 1
            stop.wait(1.0)
        display.close()
        print("stopping ...", file=out, flush=True)
        return 130


def export(store: S3Store, settings: PipelineSettings, output: Path) -> list[Path]:
    """Copy the detection files from S3 to ``output`` (replacing detection files of an earlier run)."""
    output.mkdir(parents=True, exist_ok=True)
    for old in output.glob("detection_*.csv"):
        old.unlink()
    written = []
    for key in store.list(settings.output_prefix):
        path = output / key[len(settings.output_prefix) :]
        path.write_bytes(store.get(key))
        written.append(path)
    return written


def _summary(progress: StreamProgress, metrics: list[dict], files: list[Path], output: Path, out: IO[str]) -> None:
    """A table on a terminal, else the two lines make run's callers read."""
    console = console_for(out)
    lags = _lags(metrics)
    if console.is_terminal:
        console.print(_summary_table(progress, files, output, lags))
        return
    by_pattern = ", ".join(f"{p} {n}" for p, n in progress.detections_by_pattern.items())
    print(
        f"stream complete: {progress.chunks_folded} chunks, {progress.rows_folded:,} rows, "
        f"{progress.detections} detections ({by_pattern}), {len(files)} files copied to {output}/",
        file=out,
    )
    if lags:
        print(f"lag from upload to commit: {_lag_figures(lags)}", file=out, flush=True)


def _summary_table(progress: StreamProgress, files: list[Path], output: Path, lags: list[float]) -> Table:
    figures = [
        ("chunks", f"{progress.chunks_folded:,}"),
        ("rows", f"{progress.rows_folded:,}"),
        *detection_figures(progress.detections_by_pattern),
        ("detection files", f"{len(files):,} copied to {output}/"),
    ]
    if lags:
        figures.append(("lag, upload to commit", _lag_figures(lags)))
    return figures_table("stream complete", figures)


def _lags(metrics: list[dict]) -> list[float]:
    """Seconds from each committed chunk's upload to its commit, smallest first."""
    return sorted(m["committed_at"] - m["uploaded_at"] for m in metrics if m.get("committed_at"))


def _lag_figures(lags: list[float]) -> str:
    p95 = lags[min(len(lags) - 1, round(0.95 * (len(lags) - 1)))]
    return f"median {statistics.median(lags):.2f} s, p95 {p95:.2f} s, max {lags[-1]:.2f} s"


def _latest_lag(metrics: list[dict]) -> float | None:
    """The newest chunk's lag: to its commit, or to the end of its fold while the commit is pending."""
    if not metrics:
        return None
    last = metrics[-1]
    return (last.get("committed_at") or last["finished_at"]) - last["uploaded_at"]


class _Display(Protocol):
    """The stream's progress while it runs: ``show`` about every second, ``close`` before
    anything else is printed."""

    def show(self, progress: StreamProgress, metrics: list[dict]) -> None: ...

    def close(self) -> None: ...


def _display(out: IO[str]) -> _Display:
    console = console_for(out)
    return _LiveDisplay(console) if console.is_terminal else _PlainDisplay(out)


class _PlainDisplay:
    """A line every few seconds (and at each change), for logs."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.last = ""
        self.last_time = 0.0

    def show(self, progress: StreamProgress, metrics: list[dict]) -> None:
        if not progress.started:
            line = "waiting for the producer to start the stream ..."
        else:
            lag = _latest_lag(metrics)
            found = " ".join(f"{p}={n}" for p, n in progress.detections_by_pattern.items())
            line = (
                f"chunks uploaded {progress.chunks_uploaded}/{progress.chunks_total}  "
                f"processed {progress.chunks_folded}/{progress.chunks_total}  "
                f"detections {found}  files {progress.files_written}" + (f"  lag {lag:.1f} s" if lag is not None else "")
            )
        if (line != self.last and time.monotonic() - self.last_time >= 5) or progress.finished:
            print(line, file=self.out, flush=True)
            self.last_time = time.monotonic()
        self.last = line

    def close(self) -> None:
        """Nothing to end: every line it printed is whole."""


class _LiveDisplay:
    """On a terminal: bars for the chunks uploaded and committed, and a line of detections,
    files and lag, redrawn in place. Closed, its last frame stays on the screen."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None

    def show(self, progress: StreamProgress, metrics: list[dict]) -> None:
        frame = _stream_frame(progress, _latest_lag(metrics))
        if self.live is None:  # (again after a close: the loop goes on after a failed run is reported)
            self.live = Live(frame, console=self.console, refresh_per_second=4)
            self.live.start()
        else:
            self.live.update(frame)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _stream_frame(progress: StreamProgress, lag: float | None) -> RenderableType:
    """What ``_LiveDisplay`` draws: a spinner until the stream starts, then its two bars and a line."""
    if not progress.started:
        return Spinner("dots", "waiting for the producer to start the stream ...")
    total = progress.chunks_total
    bars = Table.grid(padding=(0, 2))
    bars.add_column(min_width=len("detections"), style="bold")
    for name, done in (("uploaded", progress.chunks_uploaded or 0), ("committed", progress.chunks_folded)):
        bars.add_row(name, ProgressBar(total=total, completed=done, width=40), f"{done:,}/{total:,} chunks")
    found = "  ".join(f"{p} {n:,}" for p, n in progress.detections_by_pattern.items())
    status = Text.assemble(("detections", "bold"), f"  {found}  files {progress.files_written:,}")
    if lag is not None:
        status.append(f"  lag {lag:.1f} s")
    return Group(bars, status)


_DATA_FILES = ("transactions.csv", "CustomerImportance.csv")


def _ensure_data(data: Path, out: IO[str]) -> None:
    """Use the real files placed in ``data``, or generate both when neither is there; a folder
    with only one of them is refused rather than overwritten."""
    present = [name for name in _DATA_FILES if (data / name).exists()]
    if len(present) == len(_DATA_FILES):
        print(f"using the files in {data}/", file=out, flush=True)
        return
    if present:
        missing = next(name for name in _DATA_FILES if name not in present)
        raise LaunchError(
            f"{data}/ holds {present[0]} but no {missing}: place both real files there, or remove {present[0]} "
            "to have BankSim-shaped ones generated"
        )
    from patternflow.ingest.generate import generate

    print(f"no transactions.csv and CustomerImportance.csv in {data}/: generating BankSim-shaped ones ...", file=out, flush=True)
    generate(data, seed=0)


def _pipeline_environment(options: LaunchOptions) -> dict[str, str]:
    """The pipeline's settings: the caller's ``PATTERNFLOW_*``, then what the options set."""
    env = {k: v for k, v in os.environ.items() if k.startswith("PATTERNFLOW_")}
    env["PATTERNFLOW_TRANSACTIONS"] = str((options.data / "transactions.csv").resolve())
    env["PATTERNFLOW_IMPORTANCE"] = str((options.data / "CustomerImportance.csv").resolve())
    if options.chunk_size:
        env["PATTERNFLOW_CHUNK_SIZE"] = str(options.chunk_size)
    if options.tick_seconds:
        env["PATTERNFLOW_TICK_SECONDS"] = str(options.tick_seconds)
    if options.partitions:
        env["PATTERNFLOW_PARTITIONS"] = str(options.partitions)
    return env


def airflow_environment(options: LaunchOptions, endpoint: str) -> dict[str, str]:
    """The environment of every Airflow process: this project's DAGs, the ``aws_default``
    connection to ``endpoint``, the pipeline's ``PATTERNFLOW_*`` settings, LocalExecutor."""
    connection: dict[str, Any] = {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    access_key, secret_key = s3_credentials(options)
    if access_key and secret_key:
        connection |= {"login": access_key, "password": secret_key}
    api = f"http://127.0.0.1:{options.ui_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATTERNFLOW_"))}
    env.update(_pipeline_environment(options))
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(options.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(options.project / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(options.project / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(options.ui_port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        }
    )
    if options.distributed:
        from patternflow.local.services import database_url

        database = database_url(options.pg_port)
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{options.redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database.replace("+psycopg2", ""),
            }
        )
    return env


class Stopped(Exception):
    """Ctrl-C or SIGTERM came while ``wait_until`` was waiting for something to start."""


class Processes:
    """The processes of one run by name, each the leader of a process group of its own.

    ``stop``: set when the run is to stop (``install_signal_handlers``); a wait for one of the
    processes to be ready ends at once then (``wait_until``), not when it gives up."""

    def __init__(self, logs: Path, stop: threading.Event | None = None) -> None:
        self.logs = logs
        self.stop = stop or threading.Event()
        self._by_name: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``command`` in a new session, its output appended to ``<name>.log``."""
        running = self._by_name.get(name)
        if running is not None and running.poll() is None:
            raise LaunchError(f"{name} is already running (pid {running.pid})")
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._by_name[name] = process
        return process

    def __getitem__(self, name: str) -> subprocess.Popen:
        return self._by_name[name]

    def __iter__(self) -> Iterator[subprocess.Popen]:
        return iter(list(self._by_name.values()))

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` as when its machine dies: its process group and every group its
        descendants lead (Airflow's task runners each lead one, so they would outlive the group).

        The group is stopped first, so that no descendant is started while they are collected.
        """
        import psutil

        process = self._by_name.pop(name)
        try:
            group = os.getpgid(process.pid)
            os.killpg(group, signal.SIGSTOP)
        except ProcessLookupError:  # it had already exited and been reaped
            return
        groups = {group}
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(process.pid).children(recursive=True):
                with contextlib.suppress(ProcessLookupError):
                    groups.add(os.getpgid(child.pid))
        for each in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(each, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        """Stop every process, the last started first (Airflow before its database and S3)."""
        for process in reversed(list(self)):
            stop_group(process)
        self._by_name.clear()


@contextlib.contextmanager
def processes(logs: Path, stop: threading.Event | None = None) -> Iterator[Processes]:
    """Processes started inside are stopped, with every process of their groups, on the way out."""
    started = Processes(logs, stop)
    try:
        yield started
    finally:
        started.stop_all()


def stop_group(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process's whole group, then SIGKILL whatever is left after ``grace`` seconds."""
    try:
        group = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        process.poll()
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def install_signal_handlers() -> threading.Event:
    """An event that SIGINT (Ctrl-C) and SIGTERM set. Wait on it with a timeout, ``while not
    stop.wait(1.0)``: the kernel may deliver a signal to any thread, and a main thread blocked
    in a wait without one would then never run the handler.

    The handlers are installed whatever the signals' disposition was: a process started with
    SIGINT ignored (a job in the background of a non-interactive shell, nohup, CI runners) inherits
    that, and Python then never raises KeyboardInterrupt for Ctrl-C."""
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(ready: Callable[[], bool], seconds: float, message: str, started: Processes) -> None:
    """Poll ``ready`` until it holds; LaunchError after ``seconds`` or as soon as a started process
    exits, ``Stopped`` as soon as the run is to stop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        for process in started:
            if process.poll() is not None:
                raise LaunchError(f"{message} (it exited with code {process.returncode})")
        if started.stop.wait(0.5):
            raise Stopped()
    raise LaunchError(message)


def _s3_ready(client) -> bool:
    try:
        client.list_buckets()
    except Exception:
        return False
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _admin_password(home: Path) -> str:
    try:
        return json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    except (OSError, ValueError, KeyError):
        return "(see .airflow/simple_auth_manager_passwords.json.generated)"


def _failed_runs(api: str, password: str, since: float) -> str:
    """Failed runs of the pipeline's DAGs that started after ``since``, as text ('' if none, or
    if the API cannot be asked now: the next call asks again)."""
    query = f"state=failed&start_date_gte={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))}"
    try:
        failed = []
        for dag_id in DAG_IDS:
            runs = _api_get(api, password, f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"]
            failed += [f"{dag_id} run {run['dag_run_id']}" for run in runs]
        return ", ".join(failed)
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return ""


def _api_get(api: str, password: str, route: str) -> Any:
    """GET an Airflow REST API route as admin. A token the API no longer accepts (tokens expire,
    after 24 hours by default) is replaced by a new one, once."""
    try:
        return _get_json(f"{api}{route}", _token(api, password))
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise
        _TOKENS.pop(api, None)
        return _get_json(f"{api}{route}", _token(api, password))


def _get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


_TOKENS: dict[str, str] = {}


def _token(api: str, password: str) -> str:
    if api not in _TOKENS:
        body = json.dumps({"username": "admin", "password": password}).encode()
        request = urllib.request.Request(f"{api}/auth/token", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            _TOKENS[api] = json.load(response)["access_token"]
    return _TOKENS[api]
