"""``cxone-connector demo``: the whole flow locally, end to end."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("demo", help="run everything locally, end to end",
                              description="Run everything locally, end to end.")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("demo: not built yet", file=sys.stderr)
    return 2
