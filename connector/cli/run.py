"""``cxone-connector run --config FILE``: the connector itself."""

from __future__ import annotations

import argparse
import asyncio
import sys

from connector.config import load_file
from connector.errors import ConfigError
from connector.ops import logs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the connector",
        description="Consume CRM opt-in events, gate them against the DNC table, submit "
        "compliant batches to CXone and follow every job to its end. SIGTERM or SIGINT "
        "shut it down gracefully within shutdown_deadline_s.",
    )
    p.add_argument("--config", required=True, help="the TOML configuration file")
    p.add_argument("--json-logs", action="store_true", help="log JSON lines (overrides logging.json)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_file(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.logging.level, json_lines=args.json_logs or settings.logging.json)
    from connector.app import run_app  # imported late: --help stays fast
    from connector.ops.runtime import tune_gc

    tune_gc()
    return asyncio.run(run_app(settings))
