"""The whole connector in-process (real broker, in-process CXone simulator), seen through ``/metrics``.

One test: DNC entries are loaded, the app starts (``/readyz`` is 503 while the DNC table
bootstraps, 200 after), ~300 synthetic CRM events are produced, and once the simulator's list
holds every compliant contact the test scrapes ``/metrics`` over HTTP and checks that every
family of issue 6 exists and that the counters agree with what was produced and with what
landed on the output topics and in the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from connector.app import App
from connector.cli.sample_data import SampleData, SampleSpec, generate
from connector.config import (
    CallbackSettings,
    MonitorSettings,
    Secret,
    ServerSettings,
    Settings,
    TopicSettings,
    WindowSettings,
)
from connector.serde.codec import AvroCodec
from connector.simulator import JobSettings, Simulator, SimulatorConfig

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(60)]

SPEC = SampleSpec(count=300, contacts=100, invalid_share=0.05, dnc_share=0.15, opt_out_share=0.1,
                  national_share=0.3, messy_share=0.1, seed=6)
WEBHOOK = "app-metrics"
P = "cxone_connector_"

#: Every family of issue 6, as the sample name that must be present in the scrape.
REQUIRED = [
    # events
    "events_consumed_total", "events_decoded_total", "events_invalid_total", "events_suppressed_total",
    "events_dead_lettered_total",
    # DNC
    "dnc_numbers", "dnc_bootstrap_state", "dnc_bootstrap_duration_seconds", "dnc_updates_applied_total",
    "dnc_lag_messages",
    # batches
    "batches_flushed_total", "batches_size_items_count", "batches_fill_ratio_count",
    "batches_window_age_seconds_count",
    # CXone
    "cxone_requests_total", "cxone_rate_limited_total", "cxone_retries_total",
    "cxone_request_duration_seconds_count", "cxone_token_refreshes_total", "cxone_jobs_in_flight",
    "cxone_job_duration_seconds_count", "cxone_jobs_total", "cxone_job_resubmissions_total",
    "cxone_last_successful_submit_timestamp_seconds",
    # WebSocket
    "websocket_connected", "websocket_reconnects_total", "websocket_events_received_total",
    "websocket_polling_fallbacks_total",
    # callbacks
    "callbacks_deliveries_total", "callbacks_attempts_total", "callbacks_duration_seconds_count",
    # Kafka
    "kafka_consumer_lag_messages", "kafka_produce_errors_total", "kafka_paused_partitions",
    "kafka_commit_duration_seconds_count",
    # end to end
    "pipeline_end_to_end_latency_seconds_count", "pipeline_unsettled_records",
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    """One parsed ``/metrics`` answer."""

    def __init__(self, text: str) -> None:
        self.samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``cxone_connector_<name>`` over the series matching ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == P + name and want <= ls)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, await resp.text()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    errors: list[Any] = []
    for key, value in records:
        producer.produce(topic, key=key, value=value,
                         on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(10) == 0
    assert errors == []


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every value on partition 0 of ``topic`` up to its current end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex}",
                         "enable.partition.eof": True})
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    deadline = time.monotonic() + 10
    try:
        while len(out) < high and time.monotonic() < deadline:
            out += [m.value() or b"" for m in consumer.consume(500, 0.2) if m.error() is None]
    finally:
        consumer.close()
    assert len(out) == high
    return out


async def until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def expected_opt_outs(data: SampleData) -> int:
    """Opt-out events whose number is valid (an invalid one is dead-lettered, not audited)."""
    return sum(1 for e in data.events
               if e.value is not None and not e.value["opted_in"] and data.expected[e.key].e164 is not None)


def settings_for(bootstrap: str, topics: TopicSettings, sim_url: str) -> Settings:
    base = Settings()
    return replace(
        base,
        kafka=replace(base.kafka, bootstrap_servers=bootstrap, group_id=f"app-metrics-{uuid.uuid4().hex}",
                      consume_batch_size=100, poll_timeout_s=0.05, statistics_interval_ms=200),
        topics=topics,
        window=WindowSettings(max_items=25, max_bytes=1_000_000, max_age_s=0.3),
        cxone=replace(base.cxone, base_url=sim_url, client_secret=Secret("connector-secret"),
                      request_timeout_s=5.0, connect_timeout_s=2.0, backoff_initial_s=0.02,
                      backoff_max_s=0.3),
        monitor=MonitorSettings(ping_interval_s=1.0, ping_timeout_s=1.0, poll_interval_s=0.1,
                                poll_interval_max_s=0.5, job_deadline_s=10.0, max_job_attempts=3),
        callbacks=CallbackSettings(urls=(f"{sim_url}/_sim/webhooks/{WEBHOOK}",), secret=Secret("hook"),
                                   max_attempts=3, timeout_s=2.0, backoff_initial_s=0.02, backoff_max_s=0.1),
        server=ServerSettings(host="127.0.0.1", port=0, consumer_stall_s=30.0),
        shutdown_deadline_s=5.0,
    )


async def test_metrics_agree_with_the_pipeline(kafka_bootstrap: str, topic_factory: Any) -> None:
    started_at = time.time()
    data = generate(SPEC)
    topics = TopicSettings(
        contacts=topic_factory("optin"),
        dnc=topic_factory("dnc", config={"cleanup.policy": "compact"}),
        job_events=topic_factory("jobs"),
        callback_results=topic_factory("callbacks"),
        suppressed=topic_factory("suppressed"),
        dlq=topic_factory("dlq"),
    )
    dnc_codec, contact_codec = AvroCodec("DncEntry"), AvroCodec("ContactOptInChanged")
    produce(kafka_bootstrap, topics.dnc,
            [(r.key.encode(), dnc_codec.encode(r.value)) for r in data.dnc if r.value is not None])

    sim = Simulator(SimulatorConfig(jobs=JobSettings(items_per_second=5000.0, concurrency=4, tick_s=0.01)))
    await sim.start(host="127.0.0.1", port=0)
    app = App(settings_for(kafka_bootstrap, topics, sim.url))
    run = asyncio.create_task(app.run())
    try:
        def listening() -> bool:
            try:
                return app.server.port > 0
            except RuntimeError:  # not bound yet
                return run.done()

        await until("the metrics server", listening, 10, interval=0.005)
        assert not run.done()
        base = f"http://127.0.0.1:{app.server.port}"

        # Readiness: 503 while the DNC table bootstraps, 200 once it (and the rest) is there.
        status, body = await get(base + "/readyz")
        assert status == 503, body
        assert "DNC table still bootstrapping" in body
        assert (await get(base + "/healthz"))[0] == 200

        async def ready() -> bool:
            return (await get(base + "/readyz"))[0] == 200

        await until("/readyz 200", ready, 15)
        scrape = Scrape((await get(base + "/metrics"))[1])
        assert scrape.total("dnc_bootstrap_state", state="ready") == 1
        assert scrape.total("dnc_bootstrap_state", state="loading") == 0
        assert scrape.total("dnc_numbers") == len(data.dnc)

        # Live DNC updates (a number no contact holds, added then removed) are counted by op.
        spare = b"+12025550100"
        produce(kafka_bootstrap, topics.dnc, [(spare, dnc_codec.encode(data.dnc[0].value or {}))])
        produce(kafka_bootstrap, topics.dnc, [(spare, None)])

        async def dnc_followed() -> bool:
            nonlocal scrape
            scrape = Scrape((await get(base + "/metrics"))[1])
            return scrape.total("dnc_updates_applied_total") == 2

        await until("two live DNC updates", dnc_followed, 10)
        assert scrape.total("dnc_updates_applied_total", op="upsert") == 1
        assert scrape.total("dnc_updates_applied_total", op="delete") == 1

        produce(kafka_bootstrap, topics.contacts,
                [(r.key.encode(), contact_codec.encode(r.value)) for r in data.events if r.value is not None])

        compliant = {c.e164 for c in data.expected.values() if c.compliant}
        list_id = app.settings.cxone.contact_list_id

        async def all_sent() -> bool:
            async with aiohttp.ClientSession() as s, s.get(f"{sim.url}/_sim/lists/{list_id}/contacts") as r:
                if r.status != 200:
                    return False
                phones = {c["phoneNumber"] for c in (await r.json())["contacts"]}
            return compliant <= phones

        await until("every compliant contact in the simulator", all_sent, 20)

        async def settled() -> bool:
            nonlocal scrape
            scrape = Scrape((await get(base + "/metrics"))[1])
            batches = scrape.total("batches_flushed_total")
            return (scrape.total("events_consumed_total") == len(data.events)
                    and scrape.total("pipeline_unsettled_records") == 0
                    and scrape.total("cxone_jobs_in_flight") == 0
                    and scrape.total("callbacks_deliveries_total") == batches
                    and scrape.total("kafka_consumer_lag_messages", client="contacts") == 0
                    and (P + "kafka_consumer_lag_messages") in scrape.names())

        await until("settled counters", settled, 15)
    finally:
        app.request_stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(20):
                await run
        await sim.stop()
    assert run.result() == 0

    # Every family of the issue is exposed.
    missing = [name for name in REQUIRED if P + name not in scrape.names()]
    assert missing == []

    # Events: consumed = decoded + invalid; invalid = what the sample made invalid = the DLQ.
    dlq = read_all(kafka_bootstrap, topics.dlq)
    audits = [AvroCodec("SuppressedContact").decode(v) for v in read_all(kafka_bootstrap, topics.suppressed)]
    assert scrape.total("events_consumed_total") == len(data.events) == SPEC.count
    invalid = scrape.total("events_invalid_total")
    assert invalid == data.stats["invalid_events"] > 0
    assert scrape.total("events_decoded_total") + invalid == len(data.events)
    assert scrape.total("events_dead_lettered_total") == len(dlq) == invalid
    assert scrape.total("events_dead_lettered_total", stage="normalise") == invalid

    # Suppressed: one per audit record, by reason and list.
    assert scrape.total("events_suppressed_total") == len(audits) > 0
    assert scrape.total("events_suppressed_total", reason="opted_out") == expected_opt_outs(data)
    dnc_audits = sum(1 for a in audits if a["reason"] == "DNC")
    assert dnc_audits > 0
    assert scrape.total("events_suppressed_total", list=SPEC.dnc_list) == dnc_audits
    assert scrape.total("events_suppressed_total", list="none") == len(audits) - dnc_audits

    # Batches and jobs: one job per batch (v2), all completed, every one published.
    jobs = [AvroCodec("JobEvent").decode(v) for v in read_all(kafka_bootstrap, topics.job_events)]
    completed = {j["batch_id"] for j in jobs if j["status"] == "COMPLETED"}
    batches = scrape.total("batches_flushed_total")
    assert batches == len(completed) == scrape.total("batches_size_items_count") > 1
    assert scrape.total("batches_flushed_total", reason="size") >= 1
    assert scrape.total("cxone_jobs_total", outcome="completed") == batches
    assert scrape.total("cxone_jobs_total") == batches
    assert scrape.total("cxone_job_duration_seconds_count") == batches
    assert scrape.total("cxone_requests_total", endpoint="bulk_insert", status_class="2xx") == batches
    assert scrape.total("cxone_job_resubmissions_total") == 0
    assert scrape.total("cxone_token_refreshes_total", outcome="ok") >= 1
    assert scrape.total("cxone_last_successful_submit_timestamp_seconds") >= started_at
    sent = scrape.total("batches_size_items_sum")
    assert sent >= len(compliant)
    assert scrape.total("pipeline_end_to_end_latency_seconds_count") == sent
    assert scrape.total("batches_fill_ratio_count") == batches
    assert scrape.total("batches_window_age_seconds_count") == batches

    # WebSocket (v2 pushes job events), callbacks, Kafka.
    assert scrape.total("websocket_connected") == 1
    assert scrape.total("websocket_events_received_total") >= 1
    assert scrape.total("callbacks_deliveries_total", outcome="delivered") == batches
    assert scrape.total("callbacks_attempts_total") == batches
    assert scrape.total("kafka_produce_errors_total") == 0
    assert scrape.total("kafka_paused_partitions") == 0
    assert scrape.total("kafka_commit_duration_seconds_count") >= 1
    assert scrape.total("dnc_updates_applied_total") == 2
    assert scrape.total("dnc_numbers") == len(data.dnc)
    assert scrape.total("dnc_lag_messages") == 0
