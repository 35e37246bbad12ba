"""The layer rule: ``connector/core/`` is pure.

A core module imports only the standard library's non-I/O modules, its pure third-party
dependencies, other ``connector.core`` modules and ``connector.errors`` (the exception tree,
which imports nothing). Anything else (a Kafka client, an HTTP library, threads, the event
loop, the process's C library) belongs to an outer layer, which then passes what core needs
as values or callables.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "connector" / "core"
#: Standard-library modules that do I/O, block, or reach outside the process.
IO_STDLIB = frozenset({
    "asyncio", "concurrent", "ctypes", "http", "io", "logging", "mmap", "multiprocessing", "os", "pathlib",
    "queue", "select", "selectors", "shutil", "signal", "socket", "ssl", "subprocess", "sys", "tempfile",
    "threading", "time", "urllib",
})
#: Third-party libraries core may use: pure computation only.
PURE_THIRD_PARTY = frozenset({"phonenumbers", "pyroaring"})


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    if module == "connector.errors" or module == "connector.core" or module.startswith("connector.core."):
        return True
    if top == "__future__":
        return True
    if top in sys.stdlib_module_names:
        return top not in IO_STDLIB
    return top in PURE_THIRD_PARTY


CORE_MODULES = sorted(p for p in CORE.glob("*.py"))


def test_core_has_modules() -> None:
    assert len(CORE_MODULES) >= 6


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io_and_nothing_outside_core(path: Path) -> None:
    bad = [m for m in _imports(path) if not _allowed(m)]
    assert not bad, f"{path.name} imports {bad}"


def test_the_rule_catches_an_io_import() -> None:
    assert not _allowed("confluent_kafka")
    assert not _allowed("asyncio")
    assert not _allowed("connector.kafka.producer")
    assert _allowed("connector.core.models") and _allowed("collections.abc")
