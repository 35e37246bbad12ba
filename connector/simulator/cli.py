"""``cxone-connector simulate``: the CXone simulator (both profiles)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("simulate", help="run the CXone simulator (v2 and call-lists)",
                              description="Run the CXone simulator.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8700, help="port to listen on (0 picks one)")
    p.add_argument("--config", help="simulator configuration file (TOML)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("simulate: not built yet (see the simulator issue)", file=sys.stderr)
    return 2
