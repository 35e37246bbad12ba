"""Run every benchmark in bench/ in turn and print their ratio lines.

Each benchmark is its own script that takes its baseline in the same run (see
docs/benchmarks.md). This runner only sequences them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(p for p in HERE.glob("bench_*.py"))
    if not scripts:
        print("no benchmarks yet", file=sys.stderr)
        return 1
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        failed |= subprocess.call([sys.executable, str(script)])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
