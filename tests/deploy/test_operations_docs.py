"""docs/operations.md and docs/topics.md cover every key, metric, alert, topic and field."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from deploy_helpers import PROMETHEUS_DIR, ROOT

from connector.config import ENV_PREFIX, TopicSettings, all_keys, env_var_name
from connector.kafka import dlq_headers as dlq

OPERATIONS = (ROOT / "docs/operations.md").read_text()
TOPICS = (ROOT / "docs/topics.md").read_text()


@pytest.mark.parametrize(("section", "key", "default"), all_keys())
def test_every_config_key_is_documented_with_its_override(section: str, key: str, default: object) -> None:
    env = env_var_name(section, key) if section else f"{ENV_PREFIX}{key.upper()}"
    rows = [line for line in OPERATIONS.splitlines() if f"`{env}`" in line]
    assert len(rows) == 1, f"{env} should appear in exactly one table row"
    assert rows[0].startswith(f"| `{key}` |")


def test_every_metric_family_is_documented(metric_names: set[str]) -> None:
    families = {n for n in metric_names if not n.endswith(("_created", "_bucket", "_sum", "_count"))}
    assert len(families) > 40
    missing = sorted(n for n in families if f"`{n}`" not in OPERATIONS)
    assert not missing


def test_every_alert_has_a_runbook_section() -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    headings = set(re.findall(r"^### (\S+)$", OPERATIONS, re.M))
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] in headings, f"no runbook for {rule['alert']}"


@pytest.mark.parametrize(
    "heading",
    ["Configuration reference", "Metrics reference", "Alert runbooks", "Delivery guarantees",
     "Scaling out", "Rotating credentials", "Replaying the DLQ"],
)
def test_operations_has_the_required_sections(heading: str) -> None:
    assert f"\n## {heading}\n" in OPERATIONS


def test_topics_doc_covers_every_output_topic_and_schema_field() -> None:
    defaults = TopicSettings()
    for topic in (defaults.job_events, defaults.callback_results, defaults.suppressed, defaults.dlq):
        assert f"## `{topic}`" in TOPICS
    for name in ("JobEvent", "CallbackResult", "SuppressedContact"):
        assert f"schemas/{name}.avsc" in TOPICS
        schema = json.loads((ROOT / "schemas" / f"{name}.avsc").read_text())
        for field in schema["fields"]:
            assert f"`{field['name']}`" in TOPICS, f"{name}.{field['name']} is not described"
    for header in (dlq.TOPIC, dlq.PARTITION, dlq.OFFSET, dlq.EXCEPTION_CLASS, dlq.EXCEPTION_MESSAGE,
                   dlq.STAGE):
        assert f"`{header}`" in TOPICS
    for part in ("Key:", "Ordering:", "What you may see twice:"):
        assert TOPICS.count(part) >= 3
