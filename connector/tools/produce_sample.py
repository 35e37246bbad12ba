"""``cxone-connector produce-sample``: synthetic CRM and DNC events."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("produce-sample", help="produce synthetic CRM and DNC events",
                              description="Produce synthetic CRM and DNC events.")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("produce-sample: not built yet (see the ingest issue)", file=sys.stderr)
    return 2
