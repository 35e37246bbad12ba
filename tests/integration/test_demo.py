"""The README's demo command runs end to end and says OK (both profiles)."""

from __future__ import annotations

import pytest

from connector.cli import main

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


@pytest.mark.parametrize("profile", ["v2", "call-lists"])
def test_demo_runs_end_to_end(kafka_bootstrap: str, profile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--bootstrap-servers", kafka_bootstrap, "--profile", profile,
                 "--events", "600", "--contacts", "250", "--metrics-port", "0", "--timeout", "60"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "summary (all settled" in out
    assert "result: OK" in out
    assert "0 on DNC or invalid" in out
    if profile == "call-lists":
        assert "0 opted out after their opt-in was delivered" in out
    assert "topics demo." in out and "deleted" in out  # no demo topics left behind
    assert "|FAIL|" not in out and "%3|" not in out
