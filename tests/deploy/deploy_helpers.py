"""Helpers for the deployment tests: the repository root, exported metric names, tools."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from connector.config import ENV_PREFIX, PASSTHROUGH_SECTIONS, all_keys, env_var_name
from connector.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
#: Every override variable of a key in ``all_keys()``.
CONFIG_ENV = {env_var_name(s, k) if s else f"{ENV_PREFIX}{k.upper()}" for s, k, _ in all_keys()}


def is_config_env(name: str) -> bool:
    """A real override: a key of ``all_keys()`` or a key of a librdkafka pass-through table."""
    return name in CONFIG_ENV or any(
        name.startswith(f"{ENV_PREFIX}{p.upper()}__") for p in PASSTHROUGH_SECTIONS
    )


def exported_names() -> set[str]:
    """Every sample name a fresh :class:`Metrics` can export (histograms with their suffixes)."""
    text = generate_latest(Metrics().registry).decode()
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        if kind == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


def require_tool(name: str) -> str:
    """The path of a Debian-packaged tool; a missing one fails the test unless skipping is asked.

    ``CXONE_SKIP_PROMTOOL=1`` turns a missing ``promtool``/``prometheus`` into a skip (for
    machines where ``deploy/local/install-tools.sh`` cannot run).
    """
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CXONE_SKIP_PROMTOOL") == "1":
        pytest.skip(f"{name} not installed and CXONE_SKIP_PROMTOOL=1")
    pytest.fail(f"{name} is not installed: run deploy/local/install-tools.sh (Debian package prometheus)")
