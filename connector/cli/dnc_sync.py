"""``cxone-connector dnc sync``: sync a DNC list with the registry's own files (in progress)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dnc sync`` under the ``dnc`` command's subparsers."""
