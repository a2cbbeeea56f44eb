"""The ``patternflow`` console command."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from patternflow import banksim
from patternflow.errors import PatternflowError


def _generate(args: argparse.Namespace) -> int:
    from patternflow.generate import generate

    started = time.perf_counter()
    result = generate(args.out, seed=args.seed, rows=args.rows)
    print(
        f"wrote {result.rows:,} transactions ({result.customers:,} customers, {result.merchants} merchants) "
        f"to {result.transactions} and {result.importance} in {time.perf_counter() - started:.1f} s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patternflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="write synthetic BankSim transactions.csv and CustomerImportance.csv")
    gen.add_argument("--out", required=True, help="folder to write the two files into")
    gen.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes (default 0)")
    gen.add_argument("--rows", type=_positive, default=banksim.ROWS, help=f"number of transactions (default {banksim.ROWS:,})")
    gen.set_defaults(handler=_generate)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except PatternflowError as exc:
        print(f"patternflow {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
