"""``cxone-connector``: the command line.

Each subcommand lives next to the code it drives and registers itself through a
``register(subparsers)`` function, so this module only assembles the parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in the order ``--help`` lists them.
_COMMAND_MODULES = (
    "connector.cli.run",
    "connector.cli.check_config",
    "connector.simulator.cli",
    "connector.cli.demo",
    "connector.cli.produce_sample",
    "connector.cli.dnc_load",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="cxone-connector",
        description="Keep NICE CXone outbound contact lists in sync with CRM events on Kafka, "
        "never sending a number on a Do-Not-Call list.",
    )
    parser.add_argument("--version", action="version", version="%(prog)s 0.1.0")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cxone-connector`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
