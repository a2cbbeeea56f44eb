"""The ``patternflow`` console command."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from rich_argparse import RichHelpFormatter

from patternflow.errors import PatternflowError
from patternflow.ingest import banksim

if TYPE_CHECKING:
    from patternflow.replay import ReplaySummary


def _generate(args: argparse.Namespace) -> int:
    from patternflow.ingest.generate import generate

    started = time.perf_counter()
    result = generate(args.out, seed=args.seed, rows=args.rows)
    print(
        f"wrote {result.rows:,} transactions ({result.customers:,} customers, {result.merchants} merchants) "
        f"to {result.transactions} and {result.importance} in {time.perf_counter() - started:.1f} s"
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from patternflow.console import ReplayProgress, console_for
    from patternflow.pipeline.settings import PipelineSettings
    from patternflow.replay import replay

    # the settings as the pipeline reads them (PATTERNFLOW_<NAME>), unless --chunk-size says otherwise
    config = PipelineSettings.detection_config(with_chunk_size=True)
    if args.chunk_size is not None:
        config = replace(config, chunk_size=args.chunk_size)
    settings = PipelineSettings.resolve()
    snapshots = {
        "snapshot_every": args.snapshot_every or settings.state_snapshot_every,
        "snapshot_bytes": settings.state_snapshot_bytes if args.snapshot_bytes is None else args.snapshot_bytes,
    }
    errors = console_for(sys.stderr)
    # on a terminal a bar on stderr; elsewhere nothing until the summary, as in a CI log
    with ReplayProgress(errors) if errors.is_terminal else contextlib.nullcontext() as progress:
        summary = replay(
            args.transactions,
            args.importance,
            args.out,
            config,
            args.state,
            on_chunk=progress.update if progress else None,
            commit_every=args.commit_every,
            **snapshots,
            partitions=settings.partitions if args.partitions is None else args.partitions,
            jobs=args.jobs,
        )
    _replay_summary(summary, args.out, sys.stdout)
    return 0


def _replay_summary(summary: ReplaySummary, out: str, stream: IO[str]) -> None:
    """A table on a terminal, else the one line scripts and logs read."""
    from patternflow.console import console_for, detection_figures, figures_table

    console = console_for(stream)
    if not console.is_terminal:
        by_pattern = ", ".join(f"{p} {n}" for p, n in summary.detections_by_pattern.items())
        resumed = f" (resumed at chunk {summary.first_chunk})" if summary.first_chunk else ""
        print(
            f"replayed {summary.chunks} chunks{resumed}, {summary.rows:,} rows in {summary.seconds:.2f} s: "
            f"{summary.detections} detections ({by_pattern}), {len(summary.files)} files in {out}",
            file=stream,
        )
        return
    figures = [
        ("chunks", f"{summary.chunks:,}" + (f" (resumed at chunk {summary.first_chunk:,})" if summary.first_chunk else "")),
        ("rows", f"{summary.rows:,}"),
        *detection_figures(summary.detections_by_pattern),
        ("detection files", f"{len(summary.files):,} in {out}"),
        ("wall time", f"{summary.seconds:.2f} s"),
    ]
    console.print(figures_table("replay complete", figures))


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from patternflow.local.launcher import LaunchOptions, find_project, run

    options = LaunchOptions(
        data=Path(args.data),
        output=Path(args.output),
        project=find_project(),
        exit_when_done=args.exit_when_done,
        s3_port=args.s3_port,
        ui_port=args.ui_port,
        timeout=args.timeout,
        chunk_size=args.chunk_size,
        tick_seconds=args.tick,
        metrics=Path(args.metrics) if args.metrics else None,
        distributed=args.distributed,
        workers=args.workers,
        worker_concurrency=args.worker_concurrency,
        partitions=args.partitions,
        pg_port=args.pg_port,
        redis_port=args.redis_port,
        s3_endpoint=args.s3_endpoint,
    )
    return run(options)


def _reset(args: argparse.Namespace) -> int:
    from patternflow.pipeline.producer import reset_stream
    from patternflow.pipeline.s3 import S3Store, endpoint_client
    from patternflow.pipeline.settings import PipelineSettings

    settings = PipelineSettings.resolve({"bucket": args.bucket})
    removed = reset_stream(S3Store(endpoint_client(args.endpoint_url), settings.bucket), settings)
    print(f"removed from s3://{settings.bucket}: " + ", ".join(f"{n} objects under {p}" for p, n in removed.items()))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from patternflow.pipeline.s3 import S3Store, endpoint_client
    from patternflow.pipeline.settings import PipelineSettings
    from patternflow.web.report import write_report

    settings = PipelineSettings.resolve({"bucket": args.bucket})
    view = write_report(S3Store(endpoint_client(args.endpoint_url), settings.bucket), settings, Path(args.out), args.unfinished)
    progress, detections = view["progress"], view["detections"]
    print(
        f"wrote {args.out}: {progress['chunks_processed']} chunks, {detections['total']} detections, "
        f"{len(view['files'])} detection files" + ("" if progress["finished"] else " (stream not finished)")
    )
    return 0


def _s3_server(args: argparse.Namespace) -> int:
    import logging
    import threading

    from patternflow.local.launcher import ACCESS_KEY, SECRET_KEY, LaunchError, install_signal_handlers, port_free
    from patternflow.pipeline.s3 import endpoint_client
    from patternflow.pipeline.settings import PipelineSettings

    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server
    except ImportError:
        raise LaunchError("the embedded S3 server is moto's: pip install -r requirements-dev.txt (make install does)") from None

    settings = PipelineSettings.resolve({"bucket": args.bucket})
    in_use = f"port {args.port} on 127.0.0.1 is already in use; stop what uses it or pick another with --port"
    if not port_free(args.port):
        raise LaunchError(in_use)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    # Bound here, in this thread, rather than by moto's ThreadedMotoServer, whose start() waits
    # without a timeout for its server thread: when the port is taken between the check above and
    # the bind, that thread dies and start() never returns, Ctrl-C or not.
    try:
        app = DomainDispatcherApplication(create_backend_app)
        server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    except SystemExit:  # werkzeug's answer to a failed bind, after printing the reason
        raise LaunchError(in_use) from None
    stop = install_signal_handlers()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{args.port}"
        endpoint_client(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY).create_bucket(Bucket=settings.bucket)
        print(
            f"S3 on {endpoint} with the bucket s3://{settings.bucket}, any credentials accepted; it keeps everything in memory, "
            "until it stops (Ctrl-C)",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patternflow", description=__doc__, formatter_class=RichHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    # argparse gives a subcommand's parser the default formatter, not its parent's
    command = functools.partial(commands.add_parser, formatter_class=RichHelpFormatter)

    gen = command("generate", help="write synthetic BankSim transactions.csv and CustomerImportance.csv")
    gen.add_argument("--out", required=True, help="folder to write the two files into")
    gen.add_argument("--seed", type=_seed, default=0, help="random seed; the same seed gives the same bytes (default 0)")
    gen.add_argument("--rows", type=_positive, default=banksim.ROWS, help=f"number of transactions (default {banksim.ROWS:,})")
    gen.set_defaults(handler=_generate)

    rep = command(
        "replay",
        help="run a whole transactions file through the engine and write the detection files",
        epilog="The pattern thresholds are read from PATTERNFLOW_<NAME> environment variables, as by the pipeline.",
    )
    rep.add_argument("--transactions", required=True, help="transactions CSV")
    rep.add_argument("--importance", required=True, help="CustomerImportance CSV")
    rep.add_argument("--out", required=True, help="folder for detection_<i>.csv")
    rep.add_argument("--chunk-size", type=_positive, help="rows per chunk (default: PATTERNFLOW_CHUNK_SIZE or 10,000)")
    rep.add_argument("--state", help="keep the state in this folder: a replay run again resumes where it stopped")
    rep.add_argument(
        "--commit-every",
        type=float,
        default=1.0,
        help="with --state: seconds between state commits, 0 for after every chunk (default 1)",
    )
    rep.add_argument(
        "--snapshot-every",
        type=_positive,
        help="with --state: every this many commits one writes the whole state, the others only what changed "
        "(default: PATTERNFLOW_STATE_SNAPSHOT_EVERY or 200)",
    )
    rep.add_argument(
        "--snapshot-bytes",
        type=_non_negative,
        help="with --state: the whole state is written once the deltas since the last whole one pass this many bytes "
        "(default: PATTERNFLOW_STATE_SNAPSHOT_BYTES or 64 MiB)",
    )
    rep.add_argument(
        "--partitions",
        type=_positive,
        help="fold the stream as this many merchant partitions, as the pipeline does, and merge their detections "
        "(default: PATTERNFLOW_PARTITIONS or 1, one engine); with --state, a replay resumes only with the number it started with",
    )
    rep.add_argument(
        "--jobs",
        type=_positive,
        help="with --partitions N > 1: worker processes the partitions are spread over (default: the cores, at most N)",
    )
    rep.set_defaults(handler=_replay)

    run = command("run", help="run the whole pipeline locally: an S3 server on 127.0.0.1, Airflow standalone, the two DAGs")
    run.add_argument(
        "--data", default="data", help="folder with transactions.csv and CustomerImportance.csv; generated if missing (default data/)"
    )
    run.add_argument(
        "--output", default="output", help="folder the detection files are copied to when the stream is complete (default output/)"
    )
    run.add_argument(
        "--exit-when-done", action="store_true", help="stop everything and exit 0 once the stream is complete and exported (1 if it failed)"
    )
    run.add_argument("--timeout", type=float, help="with --exit-when-done: exit 1 if the stream is not complete after this many seconds")
    run.add_argument("--s3-port", type=_positive, default=5055, help="port of the S3 server on 127.0.0.1 (default 5055)")
    run.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="use this S3 endpoint (e.g. MinIO) instead of starting the embedded server; the bucket is created there if missing, "
        "with the credentials of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (else boto's usual chain)",
    )
    run.add_argument("--ui-port", type=_positive, default=8080, help="port of the Airflow UI and API on 127.0.0.1 (default 8080)")
    run.add_argument("--chunk-size", type=_positive, help="rows per chunk (default: PATTERNFLOW_CHUNK_SIZE or 10,000)")
    run.add_argument("--tick", type=float, help="seconds between chunks (default: PATTERNFLOW_TICK_SECONDS or 1)")
    run.add_argument(
        "--metrics", help="when the stream completes, write every chunk's timings (upload, start, end, commit) to this JSON file"
    )
    run.add_argument(
        "--distributed",
        action="store_true",
        help="the docker-compose topology natively: PostgreSQL, Redis, CeleryExecutor, separate Airflow components, Celery workers",
    )
    run.add_argument("--workers", type=_positive, default=2, help="with --distributed: Celery workers (default 2)")
    run.add_argument(
        "--worker-concurrency", type=_positive, default=4, help="with --distributed: tasks each Celery worker runs at once (default 4)"
    )
    run.add_argument(
        "--partitions",
        type=_positive,
        help="merchant partitions: detection runs as one mapped task per partition, spread over the workers "
        "(default: PATTERNFLOW_PARTITIONS or 1); a stream keeps the number it started with",
    )
    run.add_argument("--pg-port", type=_positive, default=5433, help="with --distributed: PostgreSQL port on 127.0.0.1 (default 5433)")
    run.add_argument("--redis-port", type=_positive, default=6380, help="with --distributed: Redis port on 127.0.0.1 (default 6380)")
    run.set_defaults(handler=_run)

    reset = command("reset", help="remove one stream's chunks, reference data, state and detections from its bucket")
    reset.add_argument("--endpoint-url", help="S3 endpoint (MinIO, the embedded server); default: AWS")
    reset.add_argument("--bucket", help="bucket (default: PATTERNFLOW_BUCKET or patternflow)")
    reset.set_defaults(handler=_reset)

    s3 = command("s3-server", help="an S3 server on 127.0.0.1 with the bucket in it, in memory, for airflow dags test and the like")
    s3.add_argument("--port", type=_positive, default=5055, help="port on 127.0.0.1 (default 5055, make run's)")
    s3.add_argument("--bucket", help="bucket to create (default: PATTERNFLOW_BUCKET or patternflow)")
    s3.set_defaults(handler=_s3_server)

    report = command(
        "report", help="write a stream's progress, lag and detections (the UI page's figures and plots) to a standalone HTML file"
    )
    report.add_argument("--out", required=True, help="the HTML file to write")
    report.add_argument("--endpoint-url", help="S3 endpoint (MinIO, the embedded server); default: AWS")
    report.add_argument("--bucket", help="bucket (default: PATTERNFLOW_BUCKET or patternflow)")
    report.add_argument("--unfinished", action="store_true", help="report on a stream that is not finished yet (else: an error)")
    report.set_defaults(handler=_report)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 4294967295, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (PatternflowError, OSError) as exc:
        print(f"patternflow {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not type(exc).__module__.startswith("botocore."):  # (botocore is not imported just to name its errors)
            raise
        print(f"patternflow {args.command}: S3: {exc}", file=sys.stderr)  # no credentials, no such bucket, refused...
        return 2


if __name__ == "__main__":
    sys.exit(main())
