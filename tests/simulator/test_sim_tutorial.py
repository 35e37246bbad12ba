"""The tutorial's own complete script, the simulator's first real client, runs unchanged
(apart from its URL constants and credentials) against a simulator in a background thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from connector.simulator import SimulatorConfig, SimulatorThread, V2Settings

SCRIPT = Path(__file__).with_name("tutorial_example.py")
LIST_ID = "12345678-1234-1234-1234-123456789012"


def test_tutorial_complete_working_example_runs_against_the_simulator() -> None:
    # The tutorial's JobMonitor connects without a token, so the socket's auth is optional here.
    config = SimulatorConfig(port=0, v2=V2Settings(websocket_auth="optional"))
    sim = SimulatorThread(config)
    url = sim.start()
    try:
        env = {**os.environ, "CXONE_SIM_HOSTPORT": url.removeprefix("http://")}
        done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "Submitted chunk 1. Job: " in done.stdout
        assert "Callback status: 200" in done.stdout

        def snapshot() -> tuple[list[str], list[str], list[dict[str, object]]]:
            state = sim.simulator.state
            deliveries = [json.loads(d.body) for d in state.webhooks.get("tutorial", [])]
            return sorted(state.lists[LIST_ID].contacts), [j.status for j in state.jobs.values()], deliveries

        contacts, statuses, deliveries = sim.call(snapshot)
    finally:
        sim.stop()
    # Bob (+14155551002) and Ethan (+14155551005) are on the script's DNC list.
    assert contacts == ["+14155551001", "+14155551003", "+14155551004"]
    assert statuses == ["COMPLETED"]
    assert len(deliveries) == 1
    jobs = deliveries[0]["jobs"]
    assert isinstance(jobs, dict) and [v["status"] for v in jobs.values()] == ["COMPLETED"]
