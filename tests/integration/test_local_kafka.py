"""deploy/local/kafka.sh: idempotent, never touches a broker it did not start, caches jars."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy/local/kafka.sh"

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="an external cluster is in use"),
]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    full_env.update(env or {})
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_start_is_idempotent(kafka_bootstrap: str) -> None:
    first = run("status")
    assert first.returncode == 0, first.stderr
    assert "running (pid" in first.stderr
    again = run("start")
    assert again.returncode == 0
    assert "already running" in again.stderr
    assert run("status").stderr == first.stderr  # same pid: nothing was restarted


def test_never_touches_a_broker_it_did_not_start(kafka_bootstrap: str, tmp_path: Path) -> None:
    other = {"CXONE_KAFKA_HOME": str(tmp_path / "other")}
    refused = run("start", env=other)
    assert refused.returncode != 0
    assert "did not start is listening" in refused.stderr
    stopped = run("stop", env=other)
    assert stopped.returncode == 0
    assert "no broker started by this script" in stopped.stderr
    assert run("status").returncode == 0  # ours is still up


def test_external_cluster_is_left_alone() -> None:
    res = run("stop", env={"KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092"})
    assert res.returncode == 0
    assert "names an existing cluster" in res.stderr
    assert run("status").returncode == 0


def test_jars_are_cached_and_broker_is_kafka_4_1(kafka_bootstrap: str, tmp_path: Path) -> None:
    # A Maven that fails loudly comes first on the PATH: fetch must not need it a second time.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mvn").write_text("#!/bin/sh\necho called > \"$(dirname \"$0\")/called\"\nexit 99\n")
    (fake / "mvn").chmod(0o755)
    res = run("fetch", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert res.returncode == 0, res.stderr
    assert not (fake / "called").exists()
    logs = Path(run("logs").stdout.strip())
    # the start-up line is in server.log, or in a rolled one when the broker has run long
    server_log = "".join(path.read_text(errors="replace") for path in sorted(logs.glob("server.log*")))
    assert "Kafka version: 4.1" in server_log
    assert "process.roles = [broker, controller]" in server_log
