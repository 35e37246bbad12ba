"""The metrics and health server over real HTTP on 127.0.0.1, and real librdkafka statistics."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from connector.config import ServerSettings
from connector.ops.health import Health
from connector.ops.metrics import Metrics
from connector.ops.server import MetricsServer, MetricsServerError


def settings(stall_s: float = 30.0, port: int = 0) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=port, consumer_stall_s=stall_s)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def get(http: aiohttp.ClientSession, server: MetricsServer, path: str) -> tuple[int, Any]:
    async with http.get(f"http://127.0.0.1:{server.port}{path}") as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def test_readyz_is_503_with_reason_until_every_condition_holds(http: aiohttp.ClientSession) -> None:
    health = Health()
    server = MetricsServer(settings(), Metrics().registry, health)
    await server.start()
    try:
        assert server.port > 0
        status, body = await get(http, server, "/readyz")
        assert status == 503
        assert body["status"] == "not ready"
        assert "DNC table still bootstrapping" in body["reason"]
        health.partitions_assigned = True
        health.token_ok = True
        status, body = await get(http, server, "/readyz")
        assert (status, body["reason"]) == (503, "DNC table still bootstrapping")
        health.dnc_ready = True  # the DNC bootstrap finished
        status, body = await get(http, server, "/readyz")
        assert (status, body["status"]) == (200, "ok")
        health.draining = True
        assert (await get(http, server, "/readyz"))[0] == 503
    finally:
        await server.stop()


async def test_healthz_goes_unhealthy_when_the_consumer_thread_stops_polling(
    http: aiohttp.ClientSession,
) -> None:
    health = Health()
    stuck = threading.Event()
    stop = threading.Event()

    def consumer_thread() -> None:  # stands in for the poll loop; "stuck" blocks it
        while not stop.is_set():
            if stuck.is_set():
                stop.wait()
                return
            health.mark_poll(time.monotonic())
            time.sleep(0.02)

    thread = threading.Thread(target=consumer_thread, daemon=True)
    server = MetricsServer(settings(stall_s=0.3), Metrics().registry, health)
    await server.start()
    try:
        status, body = await get(http, server, "/healthz")
        assert (status, body["reason"]) == (200, "consumer not started yet")
        thread.start()
        await asyncio.sleep(0.1)
        status, body = await get(http, server, "/healthz")
        assert (status, body["status"]) == (200, "ok")
        stuck.set()
        await asyncio.sleep(0.5)
        status, body = await get(http, server, "/healthz")
        assert status == 503
        assert body["status"] == "unhealthy"
        assert "has not polled" in body["reason"]
    finally:
        stop.set()
        thread.join(timeout=2)
        await server.stop()


async def test_metrics_serves_the_injected_registry_in_both_formats(http: aiohttp.ClientSession) -> None:
    metrics = Metrics()
    metrics.events_consumed.inc(7)
    metrics.suppressed.labels(reason="dnc", list="national").inc()
    server = MetricsServer(settings(), metrics.registry, Health())
    await server.start()
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            text = await resp.text()
        values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                  if not s.labels}
        assert values["cxone_connector_events_consumed_total"] == 7
        assert 'cxone_connector_events_suppressed_total{list="national",reason="dnc"} 1.0' in text
        headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with http.get(f"http://127.0.0.1:{server.port}/metrics", headers=headers) as resp:
            assert resp.content_type == "application/openmetrics-text"
            assert (await resp.text()).rstrip().endswith("# EOF")
    finally:
        await server.stop()


async def test_stop_frees_the_port_and_a_taken_port_is_a_clear_error() -> None:
    first = MetricsServer(settings(), Metrics().registry, Health())
    await first.start()
    port = first.port
    clash = MetricsServer(settings(port=port), Metrics().registry, Health())
    with pytest.raises(MetricsServerError, match=f"cannot listen on 127.0.0.1:{port}") as info:
        await clash.start()
    assert info.value.retriable is True
    await first.stop()
    with pytest.raises(RuntimeError):
        _ = first.port
    with socket.socket() as sock:  # freed: binding it again works
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def _consume_with_stats(bootstrap: str, topic: str, metrics: Metrics) -> None:
    """Produce 5 records, consume and commit 2, and wait for statistics showing a lag of 3."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"v{i}".encode())
    assert producer.flush(10) == 0
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{topic}.group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "statistics.interval.ms": 100,
        "stats_cb": lambda s: metrics.kafka_stats.update("contacts", s),
    })
    try:
        consumer.subscribe([topic])
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(2 - len(got), timeout=0.5) if m.error() is None)
        assert len(got) == 2
        consumer.commit(offsets=[TopicPartition(topic, 0, got[-1].offset() + 1)], asynchronous=False)
        while time.monotonic() < deadline:
            consumer.poll(0.1)  # serves stats_cb
            stats = metrics.kafka_stats.snapshot("contacts")
            # the coordinator's RTT window is empty between heartbeats: wait for one with requests
            if (stats is not None and stats.lag.get((topic, 0)) == 3 and stats.offset_commits
                    and "coordinator" in stats.broker_rtt):
                return
        raise AssertionError(f"statistics never showed lag 3: {metrics.kafka_stats.snapshot('contacts')}")
    finally:
        consumer.close()


@pytest.mark.kafka
async def test_real_librdkafka_statistics_reach_metrics_over_http(
    http: aiohttp.ClientSession, kafka_bootstrap: str, topic_factory: Any
) -> None:
    topic = topic_factory("contacts")
    metrics = Metrics()
    await asyncio.to_thread(_consume_with_stats, kafka_bootstrap, topic, metrics)
    server = MetricsServer(settings(), metrics.registry, Health())
    await server.start()
    try:
        status, text = await get(http, server, "/metrics")
        assert status == 200
        samples = {(s.name, json.dumps(s.labels, sort_keys=True)): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        lag_key = json.dumps({"client": "contacts", "partition": "0", "topic": topic}, sort_keys=True)
        assert samples[("cxone_connector_kafka_consumer_lag_messages", lag_key)] == 3
        coordinator = json.dumps({"broker": "coordinator", "client": "contacts", "stat": "avg"},
                                 sort_keys=True)
        assert samples[("cxone_connector_kafka_broker_rtt_seconds", coordinator)] > 0
        commits = json.dumps({"client": "contacts"})
        assert samples[("cxone_connector_kafka_offset_commit_requests_total", commits)] >= 1
    finally:
        await server.stop()
