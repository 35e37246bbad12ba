"""``cxone-connector simulate``: help, a real process with a config file, bad configs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from connector.cli import build_parser

CLI = [sys.executable, "-m", "connector"]


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--config", "--items-per-second", "--seed", "--log-level"):
        assert option in out
    assert "/_sim/" in out and "[faults.rate_limit]" in out


def test_runs_with_a_config_file_until_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "sim.toml"
    cfg.write_text('[v2]\nclient_id = "from-file"\n[faults.errors]\nrate = 0.0\n')
    args = [*CLI, "simulate", "--port", "0", "--config", str(cfg), "--seed", "9", "--items-per-second", "123"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("CXone simulator listening on http://127.0.0.1:"), line
            url = line.split()[-1]
            with urllib.request.urlopen(f"{url}/_sim/config", timeout=5) as resp:  # noqa: S310 - local http
                config = json.load(resp)
            assert config["v2"]["client_id"] == "from-file"
            assert config["faults"]["seed"] == 9 and config["jobs"]["items_per_second"] == 123
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_bad_config_file_exits_2_with_the_problems(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[faults.errors]\nrate = 5\n")
    done = subprocess.run([*CLI, "simulate", "--port", "0", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "faults.errors.rate" in done.stderr
