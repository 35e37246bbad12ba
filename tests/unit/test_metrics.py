"""Metrics: names, bounded and pre-initialised labels, librdkafka statistics, health state."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connector.ops.health import Health
from connector.ops.metrics import (
    CXONE_ENDPOINTS,
    DNC_STATES,
    FLUSH_REASONS,
    INVALID_REASONS,
    OTHER,
    STATUS_CLASSES,
    BoundedFamily,
    KafkaStatsCollector,
    Metrics,
    StatsError,
    parse_stats,
    status_class,
)

NAME_RE = re.compile(r"^cxone_connector_[a-z0-9]+(_[a-z0-9]+)+$")
ALLOWED_LABELS = {
    "reason", "list", "stage", "state", "op", "endpoint", "status_class", "outcome", "topic",
    "client", "partition", "broker", "stat", "le", "task", "source",
}


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from the text exposition."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_every_family_is_prefixed_and_well_named(metrics: Metrics) -> None:
    fams = list(text_string_to_metric_families(generate_latest(metrics.registry).decode()))
    assert len(fams) > 40
    for fam in fams:
        assert NAME_RE.match(fam.name), fam.name
        for s in fam.samples:
            assert set(s.labels) <= ALLOWED_LABELS, (fam.name, s.labels)


def test_labelled_counters_exist_at_zero_before_any_event(metrics: Metrics) -> None:
    samples = scrape(metrics.registry)
    invalid = samples["cxone_connector_events_invalid_total"]
    assert {dict(k)["reason"] for k in invalid} == set(INVALID_REASONS) | {OTHER}
    assert all(v == 0 for v in invalid.values())
    requests = samples["cxone_connector_cxone_requests_total"]
    assert len(requests) == (len(CXONE_ENDPOINTS) + 1) * (len(STATUS_CLASSES) + 1)
    flushed = samples["cxone_connector_batches_flushed_total"]
    assert {dict(k)["reason"] for k in flushed} >= set(FLUSH_REASONS)
    # the suppression family is visible before the first list name arrives
    assert samples["cxone_connector_events_suppressed_total"]


def test_unknown_closed_label_value_is_counted_as_other(metrics: Metrics) -> None:
    metrics.invalid.labels(reason="+14155550123").inc()
    metrics.invalid.labels(reason="too_long").inc(2)
    invalid = scrape(metrics.registry)["cxone_connector_events_invalid_total"]
    assert invalid[(("reason", OTHER),)] == 1
    assert invalid[(("reason", "too_long"),)] == 2
    assert not any("4155550123" in dict(k)["reason"] for k in invalid)


def test_closed_label_values_are_lower_cased(metrics: Metrics) -> None:
    metrics.suppressed.labels(reason="OPTED_OUT", list="crm-opt-out").inc()
    series = scrape(metrics.registry)["cxone_connector_events_suppressed_total"]
    assert series[(("list", "crm-opt-out"), ("reason", "opted_out"))] == 1


def test_dnc_list_label_is_capped() -> None:
    m = Metrics(CollectorRegistry(), max_dnc_lists=3)
    for name in ["a", "b", "c", "d", "e", "a"]:
        m.suppressed.labels(reason="dnc", list=name).inc()
    m.suppressed.labels(reason="opted_out", list="").inc()
    series = scrape(m.registry)["cxone_connector_events_suppressed_total"]
    lists = {dict(k)["list"] for k in series}
    assert lists == {"a", "b", "c", OTHER}
    assert series[(("list", "a"), ("reason", "dnc"))] == 2
    assert series[(("list", OTHER), ("reason", "dnc"))] == 2  # d and e
    assert series[(("list", OTHER), ("reason", "opted_out"))] == 1  # "none" came after the cap
    # a newly admitted list gets a zero series for every reason
    assert series[(("list", "b"), ("reason", "dnc_at_flush"))] == 0


def test_declared_dnc_lists_get_zero_series_and_empty_name_is_none(metrics: Metrics) -> None:
    metrics.declare_dnc_lists(["national", "internal"])
    metrics.suppressed.labels(reason="opted_out", list="").inc()
    series = scrape(metrics.registry)["cxone_connector_events_suppressed_total"]
    assert series[(("list", "national"), ("reason", "dnc"))] == 0
    assert series[(("list", "internal"), ("reason", "dnc_at_flush"))] == 0
    assert series[(("list", "none"), ("reason", "opted_out"))] == 1


def test_labels_must_be_exactly_the_familys(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="expected labels"):
        metrics.suppressed.labels(reason="dnc")
    with pytest.raises(ValueError, match="not an open label"):
        metrics.suppressed.declare("reason", ["x"])


def test_bounded_family_maps_unknown_values_to_the_other_child() -> None:
    fam = BoundedFamily(Counter("x", "x", labelnames=("k",), registry=CollectorRegistry()), {"k": ("a",)})
    assert fam.labels(k="zzz") is fam.labels(k=OTHER)


def test_dnc_state_is_one_hot(metrics: Metrics) -> None:
    assert scrape(metrics.registry)["cxone_connector_dnc_bootstrap_state"][(("state", "pending"),)] == 1
    metrics.set_dnc_state("ready")
    states = scrape(metrics.registry)["cxone_connector_dnc_bootstrap_state"]
    assert {dict(k)["state"]: v for k, v in states.items() if v == 1} == {"ready": 1}
    assert len(states) == len(DNC_STATES) + 1
    with pytest.raises(ValueError):
        metrics.set_dnc_state("bogus")


def test_observe_flush_records_reason_size_fill_and_age(metrics: Metrics) -> None:
    metrics.observe_flush(size=5000, max_items=10_000, window_age_s=2.0, reason="age")
    metrics.observe_flush(size=10_000, max_items=10_000, window_age_s=0.2, reason="size")
    s = scrape(metrics.registry)
    assert s["cxone_connector_batches_flushed_total"][(("reason", "age"),)] == 1
    assert s["cxone_connector_batches_size_items_count"][()] == 2
    assert s["cxone_connector_batches_size_items_sum"][()] == 15_000
    assert s["cxone_connector_batches_fill_ratio_sum"][()] == pytest.approx(1.5)
    assert s["cxone_connector_batches_fill_ratio_bucket"][(("le", "0.5"),)] == 1
    assert s["cxone_connector_batches_window_age_seconds_sum"][()] == pytest.approx(2.2)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (202, "2xx"), (301, "3xx"), (429, "4xx"), (503, "5xx"), (None, "error"), (99, "error")],
)
def test_status_class(status: int | None, expected: str) -> None:
    assert status_class(status) == expected


def test_two_metrics_objects_on_private_registries_do_not_clash() -> None:
    a, b = Metrics(), Metrics()
    a.events_consumed.inc(3)
    assert scrape(a.registry)["cxone_connector_events_consumed_total"][()] == 3
    assert scrape(b.registry)["cxone_connector_events_consumed_total"][()] == 0


# ------------------------------------------------------------------ librdkafka statistics

# Shaped after librdkafka's STATISTICS.md: brokers keyed by name, a logical GroupCoordinator
# broker, topics -> partitions keyed by id including the internal partition -1, cgrp.
SAMPLE: dict[str, Any] = {
    "name": "rdkafka#consumer-1",
    "type": "consumer",
    "ts": 1,
    "msg_cnt": 0,
    "brokers": {
        "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1,
                                     "source": "configured", "rtt": {"avg": 900, "p99": 2000, "cnt": 3}},
        "127.0.0.1:9092/1": {"name": "127.0.0.1:9092/1", "nodeid": 1, "source": "learned",
                             "rtt": {"avg": 1500, "p99": 4000, "cnt": 10}, "req": {"Fetch": 40}},
        "127.0.0.1:9092/2": {"name": "127.0.0.1:9092/2", "nodeid": 2, "source": "learned",
                             "rtt": {"avg": 0, "p99": 0, "cnt": 0}},
        "GroupCoordinator": {"name": "GroupCoordinator", "nodeid": 1, "source": "logical",
                             "rtt": {"avg": 2500, "p99": 8000, "cnt": 4},
                             "req": {"OffsetCommit": 7, "Heartbeat": 12}},
    },
    "topics": {
        "crm.contacts.optin": {
            "topic": "crm.contacts.optin",
            "partitions": {
                "0": {"partition": 0, "consumer_lag": 42, "app_offset": 100, "committed_offset": 90},
                "1": {"partition": 1, "consumer_lag": -1, "app_offset": -1001, "committed_offset": -1001},
                "-1": {"partition": -1, "consumer_lag": 99, "app_offset": 5, "committed_offset": 1},
            },
        }
    },
    "cgrp": {"state": "up", "rebalance_cnt": 3, "assignment_size": 2},
}


def test_parse_stats_takes_lag_commits_rtt_and_group_figures() -> None:
    stats = parse_stats(json.dumps(SAMPLE))
    assert stats.client_type == "consumer"
    assert stats.lag == {("crm.contacts.optin", 0): 42}
    assert stats.uncommitted == {("crm.contacts.optin", 0): 10}
    assert stats.broker_rtt == {"1": (0.0015, 0.004), "coordinator": (0.0025, 0.008)}
    assert stats.offset_commits == 7
    assert stats.rebalances == 3
    assert stats.assigned == 2
    assert stats.queued is None


def test_parse_stats_of_a_producer_reports_its_queue() -> None:
    stats = parse_stats(json.dumps({"type": "producer", "msg_cnt": 17, "topics": {}}))
    assert stats.queued == 17
    assert stats.lag == {}


@pytest.mark.parametrize("bad", ["", "not json", "[1, 2]", "42", b"\xff\xfe"])
def test_parse_stats_rejects_non_objects(bad: str | bytes) -> None:
    with pytest.raises(StatsError):
        parse_stats(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["topics", "brokers", "cgrp", "type", "msg_cnt", "x"]), json_values))
def test_parse_stats_never_fails_on_odd_shapes(doc: dict[str, Any]) -> None:
    stats = parse_stats(json.dumps(doc))
    assert all(v >= 0 and p >= 0 for (_, p), v in stats.lag.items())


partitions = st.dictionaries(
    st.integers(min_value=-1, max_value=50),
    st.tuples(st.integers(min_value=-1, max_value=10**12), st.integers(min_value=-1001, max_value=10**6)),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), partitions, max_size=3))
def test_parse_stats_lag_matches_every_known_partition(topics: dict[str, dict[int, tuple[int, int]]]) -> None:
    doc = {"type": "consumer", "topics": {
        t: {"partitions": {str(p): {"partition": p, "consumer_lag": lag, "app_offset": app,
                                    "committed_offset": 0} for p, (lag, app) in parts.items()}}
        for t, parts in topics.items()}}
    stats = parse_stats(json.dumps(doc))
    expected = {(t, p): lag for t, parts in topics.items()
                for p, (lag, _) in parts.items() if p >= 0 and lag >= 0}
    assert stats.lag == expected
    assert all(v >= 0 for v in stats.uncommitted.values())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_collector_exports_latest_stats_and_forgets_stale_clients() -> None:
    clock = FakeClock()
    reg = CollectorRegistry()
    collector = KafkaStatsCollector(max_age_s=30, clock=clock)
    reg.register(collector)
    assert collector.update("contacts", json.dumps(SAMPLE)) is True
    clock.now += 5
    s = scrape(reg)
    key = (("client", "contacts"), ("partition", "0"), ("topic", "crm.contacts.optin"))
    assert s["cxone_connector_kafka_consumer_lag_messages"][key] == 42
    assert s["cxone_connector_kafka_uncommitted_messages"][key] == 10
    assert s["cxone_connector_kafka_broker_rtt_seconds"][
        (("broker", "coordinator"), ("client", "contacts"), ("stat", "p99"))] == pytest.approx(0.008)
    assert s["cxone_connector_kafka_offset_commit_requests_total"][(("client", "contacts"),)] == 7
    assert s["cxone_connector_kafka_rebalances_total"][(("client", "contacts"),)] == 3
    assert s["cxone_connector_kafka_assigned_partitions"][(("client", "contacts"),)] == 2
    assert s["cxone_connector_kafka_stats_age_seconds"][(("client", "contacts"),)] == 5
    clock.now += 60
    s = scrape(reg)
    assert "cxone_connector_kafka_consumer_lag_messages" not in s
    assert collector.snapshot("contacts") is None


def test_collector_counts_bad_stats_instead_of_raising() -> None:
    reg = CollectorRegistry()
    collector = KafkaStatsCollector()
    reg.register(collector)
    assert collector.update("dnc", "{truncated") is False
    assert collector.update("dnc", "[]") is False
    errors = scrape(reg)["cxone_connector_kafka_stats_errors_total"]
    assert errors[(("client", "dnc"),)] == 2
    assert errors[(("client", "contacts"),)] == 0
    with pytest.raises(ValueError, match="unknown Kafka client"):
        collector.update("someone", "{}")


def test_metrics_wires_the_collector_into_its_registry(metrics: Metrics) -> None:
    metrics.kafka_stats.update("contacts", json.dumps(SAMPLE))
    assert scrape(metrics.registry)["cxone_connector_kafka_consumer_lag_messages"]


# ------------------------------------------------------------------ health


def test_health_live_until_the_consumer_stalls() -> None:
    h = Health()
    assert h.live(now=100.0, stall_s=30) == (True, "consumer not started yet")
    h.mark_poll(100.0)
    assert h.live(now=129.0, stall_s=30)[0] is True
    alive, reason = h.live(now=131.5, stall_s=30)
    assert alive is False
    assert "31.5s" in reason


def test_health_ready_lists_every_missing_condition() -> None:
    h = Health()
    ready, reason = h.ready()
    assert not ready
    assert "DNC" in reason and "assignment" in reason and "token" in reason
    h.dnc_ready = h.partitions_assigned = True
    assert h.ready() == (False, "no CXone token yet")
    h.token_ok = True
    assert h.ready() == (True, "ok")
    h.draining = True
    assert h.ready() == (False, "shutting down")


# -- DNC list ages --------------------------------------------------------------------------


def test_dnc_list_ages_grow_with_the_clock_and_are_infinite_without_a_record() -> None:
    from connector.ops.metrics import DncListAgeCollector

    now = [1_000_000.0]
    ages = DncListAgeCollector(max_lists=2, clock=lambda: now[0])
    registry = CollectorRegistry()
    registry.register(ages)
    ages.declare(["national"])
    assert scrape(registry)["cxone_connector_dnc_list_age_seconds"] == {(("list", "national"),): float("inf")}
    ages.set_as_of("national", 900_000.0)
    ages.set_as_of("internal", 999_000.0)
    ages.set_as_of("state-fl", 100_000.0)   # beyond the cap: folded into "other"
    ages.set_as_of("state-tx", 500_000.0)
    now[0] = 1_100_000.0
    assert scrape(registry)["cxone_connector_dnc_list_age_seconds"] == {
        (("list", "national"),): 200_000.0, (("list", "internal"),): 101_000.0, (("list", "other"),): 1_000_000.0}
    ages.forget("national")   # configured: stays, as +Inf
    ages.forget("internal")   # not configured: gone
    ages.forget("state-fl")
    assert scrape(registry)["cxone_connector_dnc_list_age_seconds"] == {
        (("list", "national"),): float("inf"), (("list", "other"),): 600_000.0}


def test_metrics_export_the_dnc_list_age_family(metrics: Metrics) -> None:
    metrics.dnc_list_ages.declare(["national"])
    assert (("list", "national"),) in scrape(metrics.registry)["cxone_connector_dnc_list_age_seconds"]


def test_time_zone_sources_are_counted_within_their_bounded_set(metrics: Metrics) -> None:
    name = "cxone_connector_events_time_zone_source_total"
    before = scrape(metrics.registry)[name]
    assert {dict(k)["source"] for k in before} == {"event", "zip", "state", "number", "default", "unknown", "other"}
    assert all(v == 0 for v in before.values())
    metrics.count_time_zone_sources({"zip": 3, "unknown": 1, "": 5, "+14155550123": 2})
    after = scrape(metrics.registry)[name]
    assert after[(("source", "zip"),)] == 3 and after[(("source", "unknown"),)] == 1
    assert after[(("source", "other"),)] == 2  # never a new series, and never a number in a label
    assert sum(after.values()) == 6
    metrics.suppressed.labels(reason="NO_TIME_ZONE", list="").inc()
    assert scrape(metrics.registry)["cxone_connector_events_suppressed_total"][
        (("list", "none"), ("reason", "no_time_zone"))] == 1
