"""``cxone-connector dnc load FILE``: bulk-load a DNC file into the compacted topic."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("dnc", help="manage the DNC topic", description="Manage the DNC topic.")
    sub = p.add_subparsers(dest="dnc_command", metavar="COMMAND", required=True)
    load = sub.add_parser("load", help="load a DNC file into the compacted topic",
                          description="Load a DNC file into the compacted topic.")
    load.add_argument("file", help="one number per line, or CSV")
    load.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("dnc load: not built yet (see the ingest issue)", file=sys.stderr)
    return 2
