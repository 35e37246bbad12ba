"""Alert rules and dashboard: promtool checks, and every metric they use exists in Metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_helpers import PROMETHEUS_DIR, ROOT, require_tool

METRIC_RE = re.compile(r"\bcxone_connector_[a-z0-9_]+")


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    out = subprocess.run([promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_test_rules() -> None:
    promtool = require_tool("promtool")
    out = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_check_config() -> None:
    promtool = require_tool("promtool")
    out = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def alert_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_is_unit_tested_and_has_a_runbook_link() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    for rule in alert_rules():
        name = str(rule["alert"])
        assert name in tested, f"{name} has no firing case in alerts_test.yml"
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert rule["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]


def test_the_issue_alerts_are_all_there() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    for expected in ("ConsumerLagGrowing", "DlqRateHigh", "JobsFailing", "429ShareHigh",
                     "WebSocketFlapping", "DncNotReady", "NoSuccessfulSubmit", "WebhookFailing"):
        assert f"CXoneConnector{expected}" in names


def test_alert_expressions_use_only_exported_metrics(metric_names: set[str]) -> None:
    used = set()
    for rule in alert_rules():
        used |= set(METRIC_RE.findall(str(rule["expr"])))
    assert len(used) >= 8
    assert used <= metric_names, used - metric_names


def dashboard_exprs() -> list[str]:
    dash = json.loads((ROOT / "deploy/grafana/dashboards/cxone-connector.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_uses_only_exported_metrics(metric_names: set[str]) -> None:
    used = {m for expr in dashboard_exprs() for m in METRIC_RE.findall(expr)}
    assert used <= metric_names, used - metric_names


def test_dashboard_covers_the_issue_topics() -> None:
    exprs = "\n".join(dashboard_exprs())
    for needle in ("events_consumed_total", "events_suppressed_total", "events_dead_lettered_total",
                   "batches_flushed_total", "batches_fill_ratio", "cxone_request_duration_seconds",
                   "cxone_rate_limited_total", "cxone_jobs_in_flight", "cxone_jobs_total",
                   "kafka_consumer_lag_messages", "pipeline_end_to_end_latency_seconds"):
        assert f"cxone_connector_{needle}" in exprs, needle


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    dash = json.loads((ROOT / "deploy/grafana/dashboards/cxone-connector.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_a_missing_promtool_fails_unless_skipping_is_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no promtool on it
    monkeypatch.delenv("CXONE_SKIP_PROMTOOL", raising=False)
    with pytest.raises(pytest.fail.Exception, match="install-tools.sh"):
        require_tool("promtool")
    monkeypatch.setenv("CXONE_SKIP_PROMTOOL", "1")
    with pytest.raises(pytest.skip.Exception):
        require_tool("promtool")
