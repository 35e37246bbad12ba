"""Fail closed, end to end: each failure of issue 12 injected at its real place.

The connector runs in this process against the real broker and the simulator over sockets on
127.0.0.1; what it must never do is send a number a DNC list holds, or commit past a record
it could not settle.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from e2e_helpers import (
    CONTACT,
    DNC_ENTRY,
    SUPPRESSED,
    SimFactory,
    SimInspector,
    Topics,
    committed_offsets,
    connector_config,
    decode_all,
    produce,
    read_all,
    running,
    settings_of,
    wait_committed_to_end,
    wait_until,
)
from kafka_helpers import TcpProxy, free_port

from connector.app import App
from connector.cli.sample_data import KeyedRecord
from connector.core.dnc_keys import dnc_key
from connector.kafka import dlq_headers as dlq
from connector.serde.codec import AvroCodec
from connector.simulator import FaultSettings, JobFaults, JobSettings

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(90)]


def opt_in(contact: str, phone: str, seq: int) -> KeyedRecord:
    return KeyedRecord(contact, {
        "event_id": f"ev-{contact}-{seq}", "contact_id": contact, "phone": phone, "region_hint": None,
        "first_name": "Ada", "last_name": None, "email": None, "opted_in": True,
        "changed_at": 1_700_000_000_000 + seq, "source": "crm", "custom_fields": {},
    })


async def test_a_number_added_to_dnc_while_its_first_job_runs_is_not_resubmitted(
    kafka_bootstrap: str, one_partition_topics: Topics, start_sim: SimFactory,
) -> None:
    # The first job fails (after running slowly); a DNC list takes one of its numbers meanwhile.
    # The resubmission checks every number again just before it is sent.
    topics = one_partition_topics
    sim = await start_sim(FaultSettings(jobs=JobFaults(fail_first=1)),
                          jobs=JobSettings(items_per_second=2.0, concurrency=1, tick_s=0.01))
    phones = [f"+1415555{i:04d}" for i in range(1, 6)]
    late = phones[2]
    produce(kafka_bootstrap, topics.contacts, [opt_in(f"c{i}", p, i) for i, p in enumerate(phones)], CONTACT)
    config = connector_config(topics, kafka_bootstrap, sim.url, overrides={
        "window": {"max_items": 20, "max_age_s": 0.3},
        "monitor": {"job_deadline_s": 30.0, "max_job_attempts": 3},
    })
    settings = settings_of(config)
    async with SimInspector(sim.url) as insp, running(settings) as app:
        async def first_job_running() -> bool:
            return any(j["status"] in ("QUEUED", "RUNNING", "IN_PROGRESS") for j in await insp.jobs())

        await wait_until(first_job_running, 20, "the first job to run")
        produce(kafka_bootstrap, topics.dnc, [KeyedRecord(dnc_key("national", late).decode(), {
            "list_name": "national", "reason": "registry", "added_at": 1_700_000_000_000, "expires_at": None})],
            DNC_ENTRY)

        async def dnc_has_it() -> bool:
            return app.dnc.lookup(late) == "national"

        await wait_until(dnc_has_it, 10, "the DNC table to hold the late number")
        await wait_committed_to_end(kafka_bootstrap, settings.kafka.group_id, topics, timeout=45)
        jobs = await insp.jobs()
        on_list = await insp.phones("v2")
    assert [j["status"] for j in jobs][:1] == ["FAILED"] and len(jobs) >= 2  # really resubmitted
    assert late not in on_list
    assert on_list == set(phones) - {late}
    audits = await asyncio.to_thread(decode_all, kafka_bootstrap, topics.suppressed, SUPPRESSED)
    assert [(a["contact_id"], a["reason"], a["list_name"], a["check_stage"]) for a in audits] == [
        ("c2", "DNC", "national", "SEND")]


async def test_a_poison_record_is_dead_lettered_and_the_rest_goes_on(
    kafka_bootstrap: str, one_partition_topics: Topics, start_sim: SimFactory,
) -> None:
    # Arbitrary bytes, a record of another schema, a truncated one, an oversized key: each is
    # dead-lettered with its reason, the instance keeps running, every offset is committed.
    topics = one_partition_topics
    sim = await start_sim()
    poison: list[tuple[bytes | None, bytes | None]] = [
        (b"k1", b"\x00\x00\x00\x00\x07garbage"), (b"k2", b"\xff" * 40), (b"k3", b""), (b"k4", None),
        (b"x" * 300, CONTACT.encode(opt_in("c9", "+14155550109", 9).value or {})),
    ]
    good = opt_in("c1", "+14155550101", 1)
    await asyncio.to_thread(_send_raw, kafka_bootstrap, topics.contacts, poison)
    produce(kafka_bootstrap, topics.contacts, [good], CONTACT)
    settings = settings_of(connector_config(topics, kafka_bootstrap, sim.url))
    async with SimInspector(sim.url) as insp, running(settings):
        await wait_committed_to_end(kafka_bootstrap, settings.kafka.group_id, topics, timeout=30)
        assert await insp.phones("v2") == {"+14155550101"}
    dead = await asyncio.to_thread(dead_letters_raw, kafka_bootstrap, topics)
    assert sorted(d["offset"] for d in dead) == [0, 1, 2, 3, 4]
    assert all(d["stage"] in ("decode", "validate") for d in dead)


def _send_raw(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(10) == 0


def dead_letters_raw(bootstrap: str, topics: Topics) -> list[dict[str, Any]]:
    out = []
    for msg in read_all(bootstrap, topics.dlq):
        h = dlq.header_dict(dlq.plain_headers(msg.headers()))
        out.append({"offset": int(h[dlq.OFFSET]), "stage": h[dlq.STAGE], "class": h[dlq.EXCEPTION_CLASS]})
    return out


async def _readyz(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, (await resp.json())["reason"]


async def _healthz(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return resp.status, (await resp.json())["reason"]


async def test_an_instance_started_while_the_broker_is_away_waits_then_carries_on(
    kafka_bootstrap: str, one_partition_topics: Topics, start_sim: SimFactory,
) -> None:
    # Every client bootstraps through a port where nothing listens for the first 20 s.
    topics = one_partition_topics
    sim = await start_sim()
    produce(kafka_bootstrap, topics.contacts, [opt_in("c1", "+14155550101", 1)], CONTACT)
    proxy = TcpProxy(free_port(), kafka_bootstrap)
    settings = settings_of(connector_config(topics, f"127.0.0.1:{proxy.port}", sim.url))
    try:
        async with SimInspector(sim.url) as insp, running(settings) as app:
            await asyncio.sleep(20)
            assert app.server.port and not app.stopping.is_set()  # still running, not crashed
            status, reason = await _readyz(app.server.port)
            assert status == 503 and "DNC" in reason
            assert await insp.phones("v2") == set()
            await proxy.start()  # the broker is back
            await wait_committed_to_end(kafka_bootstrap, settings.kafka.group_id, topics, timeout=40)
            assert await insp.phones("v2") == {"+14155550101"}
    finally:
        await proxy.stop()


async def test_a_dnc_table_that_stops_being_current_holds_sending_then_stops_the_process(
    kafka_bootstrap: str, one_partition_topics: Topics, start_sim: SimFactory,
    topic_factory: Callable[..., str],
) -> None:
    # The DNC topic vanishes under a running instance: its table can no longer be current.
    topics = one_partition_topics
    sim = await start_sim()
    settings = settings_of(connector_config(topics, kafka_bootstrap, sim.url, overrides={
        "dnc": {"max_stall_s": 2.0, "max_unavailable_s": 15.0}}))
    app = App(settings)
    runner = asyncio.create_task(app.run())
    async with SimInspector(sim.url) as insp:
        await wait_until(_ready(app), 30, "the instance to be ready")
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for fut in admin.delete_topics([topics.dnc], operation_timeout=20).values():
            fut.result(timeout=20)
        await wait_until(_not_current(app), 20, "the DNC table to stop being current")
        produce(kafka_bootstrap, topics.contacts, [opt_in("c1", "+14155550101", 1)], CONTACT)
        status, reason = await _readyz(app.server.port)
        assert status == 503 and "sending held: the DNC table is not current" in reason
        assert app.metrics.registry.get_sample_value("cxone_connector_pipeline_send_gate_open") == 0
        async with asyncio.timeout(30):
            code = await runner  # exits by itself after dnc.max_unavailable_s
        assert code == 1
        assert await insp.phones("v2") == set()  # nothing was sent meanwhile
    committed = await asyncio.to_thread(
        committed_offsets, kafka_bootstrap, settings.kafka.group_id, topics.contacts, 1)
    assert committed.get(0, -1) < 1  # the record was never settled, so never committed


async def test_healthz_fails_when_records_wait_while_nothing_settles(
    kafka_bootstrap: str, one_partition_topics: Topics, start_sim: SimFactory,
) -> None:
    # CXone jobs that never end: the records stay unsettled and /healthz turns red.
    topics = one_partition_topics
    sim = await start_sim(jobs=JobSettings(items_per_second=0.001, concurrency=1, tick_s=0.05))
    produce(kafka_bootstrap, topics.contacts, [opt_in("c1", "+14155550101", 1)], CONTACT)
    settings = settings_of(connector_config(topics, kafka_bootstrap, sim.url, overrides={
        "health": {"max_unsettled_age_s": 3.0}, "monitor": {"job_deadline_s": 600.0}}))
    async with running(settings) as app:
        await wait_until(_ready(app), 30, "the instance to be ready")

        async def unhealthy() -> bool:
            return (await _healthz(app.server.port))[0] == 503

        await wait_until(unhealthy, 20, "/healthz to fail")
        assert "while nothing settled" in (await _healthz(app.server.port))[1]


def _ready(app: App) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            port = app.server.port
        except RuntimeError:  # not listening yet
            return False
        return (await _readyz(port))[0] == 200

    return check


def _not_current(app: App) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not app.dnc.currency().current

    return check


async def test_sending_stops_when_a_registry_list_turns_31_days_old_and_resumes_after_a_sync(
    kafka_bootstrap: str, one_partition_topics: Topics, start_sim: SimFactory,
    topic_factory: Callable[..., str],
) -> None:
    topics = one_partition_topics
    lists_topic = topic_factory("lists", config={"cleanup.policy": "compact"})
    sim = await start_sim()
    now = [dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC).timestamp()]  # 30 days after the access
    _refresh(kafka_bootstrap, lists_topic, dt.date(2026, 11, 1))
    settings = settings_of(connector_config(topics, kafka_bootstrap, sim.url, overrides={
        "topics": {**topics.as_config(), "dnc_lists": lists_topic},
        "dnc": {"lists": {"national": {"max_age_days": 31}}}}))
    app = App(settings, wall_clock=lambda: now[0])
    runner = asyncio.create_task(app.run())
    try:
        async with SimInspector(sim.url) as insp:
            await wait_until(_ready(app), 30, "the instance to be ready on a 30-day-old copy")
            produce(kafka_bootstrap, topics.contacts, [opt_in("c1", "+14155550101", 1)], CONTACT)
            await wait_until(_on_list(insp, "+14155550101"), 20, "c1 to reach the list")

            now[0] = dt.datetime(2026, 12, 2, 0, 0, 1, tzinfo=dt.UTC).timestamp()  # day 31
            produce(kafka_bootstrap, topics.contacts, [opt_in("c2", "+14155550102", 2)], CONTACT)
            await asyncio.sleep(3)
            status, reason = await _readyz(app.server.port)
            assert status == 503 and "national" in reason
            assert "+14155550102" not in await insp.phones("v2")

            _refresh(kafka_bootstrap, lists_topic, dt.date(2026, 12, 1))  # the monthly sync
            await wait_until(_on_list(insp, "+14155550102"), 20, "c2 to reach the list after the sync")
    finally:
        app.request_stop()
        assert await runner == 0


def _refresh(bootstrap: str, topic: str, as_of: dt.date) -> None:
    codec = AvroCodec("DncListRefresh")
    record = {"list_name": "national", "source": "registry.zip", "as_of": as_of,
              "synced_at": dt.datetime.now(dt.UTC), "numbers": 1, "adds": 1, "removes": 0, "invalid": 0,
              "mode": "FULL"}
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"national", value=codec.encode(record))
    assert producer.flush(10) == 0


def _on_list(insp: SimInspector, phone: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return phone in await insp.phones("v2")

    return check
