"""Fail closed, end to end: each failure of issue 12 injected at its real place.

The connector runs in this process against the real broker and the simulator over sockets on
127.0.0.1; what it must never do is send a number a DNC list holds, or commit past a record
it could not settle.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import Producer
from e2e_helpers import (
    CONTACT,
    DNC_ENTRY,
    SUPPRESSED,
    SimFactory,
    SimInspector,
    Topics,
    connector_config,
    decode_all,
    produce,
    read_all,
    running,
    settings_of,
    wait_committed_to_end,
    wait_until,
)

from connector.cli.sample_data import KeyedRecord
from connector.core.dnc_keys import dnc_key
from connector.kafka import dlq_headers as dlq
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
