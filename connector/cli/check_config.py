"""``cxone-connector check-config FILE``: report every problem in a configuration file."""

from __future__ import annotations

import argparse
import sys

from connector.config import load_file
from connector.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check-config",
        help="validate a configuration file and print every problem at once",
        description="Validate a TOML configuration file together with the "
        "CXONE_CONNECTOR__* environment overrides. Prints each problem with its key and "
        "reason and exits 1, or prints 'ok' and exits 0. Secrets are never printed.",
    )
    p.add_argument("file", help="the TOML configuration file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_file(args.file)
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for key, reason in exc.problems:
            print(f"  {key}: {reason}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok (profile {settings.cxone.profile}, "
          f"input topic {settings.topics.contacts})")
    return 0
