"""Run-bound benchmark (``make bench-runs``): how ``max_rows_per_run`` trades a detection task's
throughput against how often it commits, at ten times BankSim (``--scale``) by default.

For each bound, twice and interleaved (the machine's speed swings between minutes), a fresh
stream of the generated data is uploaded whole to moto's S3 server on 127.0.0.1 and one
detection task folds it, going on with run after run as a task does while chunks keep landing
(``keep_running_seconds``). Printed for each bound: the runs, the chunks a second and a run's
fold time; and the cost of a run beyond its chunks (commit, digests, metrics), from the slope
between the largest and the smallest bound. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import boto3

from patternflow.ingest import banksim
from patternflow.pipeline.detector import detect
from patternflow.pipeline.producer import produce
from patternflow.pipeline.s3 import S3Store
from patternflow.pipeline.settings import PipelineSettings
from patternflow.pipeline.sources import source_opener
from patternflow.pipeline.status import read_chunk_metrics
from tests.benchmarks.bench_scale import bench_data
from tests.helpers import free_port

BOUNDS = (1_000_000, 250_000, 100_000)


@dataclass
class Folded:
    bound: int
    chunks: int
    runs: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.chunks / self.seconds

    @property
    def run_seconds(self) -> float:
        return self.seconds / self.runs


def s3_server() -> tuple[subprocess.Popen, object]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    for _ in range(100):
        try:
            client.list_buckets()
            return server, client
        except Exception:  # not listening yet
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto's S3 server did not start")


def fold_stream(client, data, bound: int, name: str) -> Folded:
    client.create_bucket(Bucket=name)
    store = S3Store(client, name)
    settings = PipelineSettings(bucket=name, transactions=str(data.transactions), importance=str(data.importance), max_rows_per_run=bound)
    produce(store, settings, source_opener(lambda: client), time.time(), fast=True)
    started = time.perf_counter()
    report = detect(store, settings, keep_running_seconds=86_400)
    seconds = time.perf_counter() - started
    runs = len({m["committed_at"] for m in read_chunk_metrics(store, settings)})
    return Folded(bound, len(report.chunks), runs, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=10, help="multiple of BankSim (default 10)")
    parser.add_argument("--bounds", default=",".join(map(str, BOUNDS)), help="max_rows_per_run values, comma-separated")
    args = parser.parse_args()
    bounds = [int(b) for b in args.bounds.split(",")]
    sys.stdout.reconfigure(line_buffering=True)
    print(
        f"make bench-runs   (.venv/bin/python -m tests.benchmarks.bench_runs --scale {args.scale} --bounds {args.bounds}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores)"
    )
    data = bench_data(banksim.ROWS * args.scale)
    server, client = s3_server()
    try:
        results: dict[int, list[Folded]] = {b: [] for b in bounds}
        for round_ in range(2):
            for bound in bounds:
                folded = fold_stream(client, data, bound, f"runs-{round_}-{bound}")
                results[bound].append(folded)
                print(
                    f"  max_rows_per_run {bound:>9,}: {folded.chunks} chunks in {folded.runs} runs, {folded.seconds:.1f} s, "
                    f"{folded.per_second:.1f} chunks/s, {folded.run_seconds:.2f} s a run"
                )
    finally:
        server.kill()
    fastest = max(statistics.median(f.per_second for f in results[b]) for b in bounds)
    print(f"\n== {args.scale} x BankSim, one task folding the whole stream; medians of 2, throughput over the best bound's")
    print(f"  {'max_rows_per_run':>16}  {'runs':>5}  {'chunks/s':>8}  {'ratio':>6}  {'a run':>7}")
    for bound in bounds:
        runs = results[bound][0].runs
        per_second = statistics.median(f.per_second for f in results[bound])
        run_seconds = statistics.median(f.run_seconds for f in results[bound])
        print(f"  {bound:>16,}  {runs:>5}  {per_second:>8.1f}  x{per_second / fastest:>5.2f}  {run_seconds:>6.2f}s")
    few, many = min(bounds, key=lambda b: results[b][0].runs), max(bounds, key=lambda b: results[b][0].runs)
    if results[many][0].runs > results[few][0].runs:
        extra = statistics.median(f.seconds for f in results[many]) - statistics.median(f.seconds for f in results[few])
        print(f"  a run's cost beyond its chunks: {extra / (results[many][0].runs - results[few][0].runs):.3f} s")


if __name__ == "__main__":
    main()
