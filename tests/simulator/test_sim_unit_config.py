"""Simulator configuration: defaults, TOML loading, runtime fault merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import CXoneSettings, Secret
from connector.errors import ConfigError
from connector.simulator.config import FaultSettings, SimulatorConfig, merge_faults, to_mapping


def test_defaults_match_the_connector_and_the_published_limits() -> None:
    cfg = SimulatorConfig()
    assert (cfg.v2.client_id, cfg.v2.client_secret) == ("connector", Secret("connector-secret"))
    assert cfg.v2.scopes == "outbound:contactlistitem:write outbound:job:read events:subscribe"
    assert cfg.v2.token_lifetime_s == 3600 and cfg.v2.max_items == 10_000
    cl = cfg.call_lists
    assert (cl.client_id, cl.access_key_id, cl.tenant_id) == ("connector", "ak-id", "tenant-1")
    # the connector's default (connector.config.CXoneSettings) is the simulator's
    assert cl.api_version == CXoneSettings().api_version == "v34.0"
    assert cl.accept == "required" and cfg.v2.accept == "negotiated" and cl.max_page_size == 100
    assert cl.access_key_secret == Secret("ak-secret") and cl.client_secret == Secret("connector-secret")
    assert cl.max_records == 500_000 and cl.max_file_bytes == 256 * 1024 * 1024 and cl.max_record_chars == 512
    assert cfg.limits.tenant_active_records == 1_000_000
    assert cfg.jobs.items_per_second == 50_000
    f = cfg.faults
    assert not f.rate_limit.enabled and f.errors.rate == 0 and f.connections.drop_rate == 0
    assert f.connections.hang_rate == 0 and f.websocket.drop_every_s == 0 and f.websocket.silent_after_s == 0
    assert f.jobs == type(f.jobs)() and f.jobs.failed_fraction == 0 and f.token_lifetime_s == 0
    assert f.dnc.fail_numbers == () and f.uploads.reject_fraction == 0


@pytest.mark.parametrize(("changes", "key"), [
    ({"uploads": {"reject_fraction": 1.5}}, "faults.uploads.reject_fraction"),
    ({"dnc": {"fail_times": -1}}, "faults.dnc.fail_times"),
])
def test_new_fault_settings_are_checked(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        merge_faults(FaultSettings(), changes)
    assert key in [k for k, _ in err.value.problems]


def test_api_version_and_accept_are_checked() -> None:
    with pytest.raises(ConfigError) as err:
        SimulatorConfig.from_mapping({"call_lists": {"api_version": "34", "accept": "sometimes"}})
    keys = [k for k, _ in err.value.problems]
    assert "call_lists.api_version" in keys and "call_lists.accept" in keys
    merged = merge_faults(FaultSettings(), {"dnc": {"fail_numbers": ["+1 415 555 0100"], "fail_times": 2}})
    assert merged.dnc.fail_numbers == ("+1 415 555 0100",) and merged.dnc.fail_times == 2


def test_from_file_with_nested_faults_and_secret_references(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file\n")
    path = tmp_path / "sim.toml"
    path.write_text(f"""
port = 9000
[v2]
client_secret = "env:SIM_SECRET"
websocket_auth = "optional"
[call_lists]
access_key_secret = "file:{tmp_path / 'secret'}"
[jobs]
items_per_second = 100
[faults]
seed = 3
paths = ["/api/v2/outbound"]
[faults.rate_limit]
enabled = true
requests_per_second = 2.5
burst = 4
retry_after = false
[faults.errors]
rate = 0.1
statuses = [503]
[faults.jobs]
fail_first = 2
""")
    cfg = SimulatorConfig.from_file(path, env={"SIM_SECRET": "s3"})
    assert cfg.port == 9000 and cfg.v2.client_secret.get() == "s3" and cfg.v2.websocket_auth == "optional"
    assert cfg.call_lists.access_key_secret.get() == "from-file"
    assert cfg.jobs.items_per_second == 100.0
    assert cfg.faults.rate_limit.burst == 4 and not cfg.faults.rate_limit.retry_after
    assert cfg.faults.errors.statuses == (503,) and cfg.faults.jobs.fail_first == 2
    assert cfg.faults.paths == ("/api/v2/outbound",)
    assert to_mapping(cfg)["v2"]["client_secret"] == "<hidden>"


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("""
bogus = 1
[v2]
max_items = "many"
websocket_auth = "sometimes"
[faults.errors]
rate = 2.0
statuses = [404]
[faults.jobs]
failed_fraction = 0.7
aborted_fraction = 0.7
""")
    with pytest.raises(ConfigError) as err:
        SimulatorConfig.from_file(path)
    keys = {k for k, _ in err.value.problems}
    assert {"bogus", "v2.max_items", "v2.websocket_auth", "faults.errors.rate", "faults.errors.statuses",
            "faults.jobs"} <= keys


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        SimulatorConfig.from_file(tmp_path / "missing.toml")
    (tmp_path / "x.toml").write_text("[[[")
    with pytest.raises(ConfigError, match="not valid TOML"):
        SimulatorConfig.from_file(tmp_path / "x.toml")


def test_merge_faults_is_partial_and_checked() -> None:
    merged = merge_faults(FaultSettings(seed=5), {"errors": {"rate": 0.5}, "websocket": {"drop_every_s": 2}})
    assert merged.seed == 5 and merged.errors.rate == 0.5 and merged.errors.statuses == (500, 502, 503)
    assert merged.websocket.drop_every_s == 2.0
    with pytest.raises(ConfigError) as err:
        merge_faults(FaultSettings(), {"errors": {"rate": -1, "nope": 1}})
    assert {k for k, _ in err.value.problems} == {"faults.errors.rate", "faults.errors.nope"}
