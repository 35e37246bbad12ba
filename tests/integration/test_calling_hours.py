"""Calling-hours data through IngestPipeline on the real broker: each contact handed to submit
carries its time zone, and an opt-in without one is audited instead when the config refuses it."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from test_ingest import CONTACT, Env, committed, send, until

from connector.config import CallingHoursSettings, IngestSettings
from connector.core.models import Batch
from connector.cxone import protocol
from connector.kafka.client_config import dnc_consumer_config
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.dnc_source import DncSource
from connector.kafka.producer import AsyncProducer
from connector.pipeline.ingest import IngestPipeline

pytestmark = pytest.mark.kafka


def located(contact: str, phone: str, **location: str) -> tuple[bytes, bytes]:
    """An opt-in with calling-hours fields (time_zone, zip_code, state)."""
    return contact.encode(), CONTACT.encode({
        "event_id": uuid.uuid4().hex, "contact_id": contact, "phone": phone, "opted_in": True,
        "changed_at": 1_700_000_000_000, "source": "test", **location,
    })


@asynccontextmanager
async def pipeline(env: Env, *, default_time_zone: str = "", unknown: str = "send",
                   workers: int = 0) -> AsyncIterator[IngestPipeline]:
    """An IngestPipeline with ``[calling_hours]`` set.

    The settings alone wire everything: the decode spec's default zone and the core's refusal.
    """
    settings = dataclasses.replace(env.settings, calling_hours=CallingHoursSettings(default_time_zone, unknown))  # type: ignore[arg-type]  # a Literal
    producer = AsyncProducer({"bootstrap.servers": env.bootstrap, "linger.ms": "2"})
    await producer.start()
    dnc = DncSource(dnc_consumer_config(settings), env.topics["dnc"], None,
                    dead_letters=DeadLetterWriter(producer, env.topics["dlq"]), poll_timeout_s=0.05)
    holder: list[IngestPipeline] = []

    async def submit(batch: Batch) -> None:
        env.batches.append(batch)
        await holder[0].settle_batch(batch)

    settings = dataclasses.replace(settings, ingest=IngestSettings(workers=workers))
    p = IngestPipeline(settings, submit=submit, producer=producer, dnc=dnc, commit_interval_s=0.1, tick_s=0.02)
    holder.append(p)
    await p.start()
    try:
        yield p
        assert p.failure is None
    finally:
        await p.stop(deadline_s=3)
        await dnc.close()
        await producer.close()


async def test_every_contact_handed_to_submit_carries_its_zone(kafka_bootstrap: str, topic_factory: Any) -> None:
    env = Env(kafka_bootstrap, topic_factory)
    records = [
        located("c-event", "212-345-6789", time_zone="america/chicago", zip_code="10001"),
        located("c-zip", "(212) 345-6790", zip_code="79901-1234", state="NY"),
        located("c-state", "+1 915 345 6791", state="Texas"),  # the number picks Texas's Mountain part
        located("c-number", "212 345 6792"),
        located("c-default", "800 345 6793"),  # toll-free: no single zone
    ]
    async with pipeline(env, default_time_zone="America/Phoenix", workers=2):
        send(kafka_bootstrap, env.topics["contacts"], records)
        await until(lambda: len(env.emitted_phones()) == len(records), timeout=20)
    contacts = [c for b in env.batches for c in b.contacts]
    assert {c.contact_id: (c.time_zone, c.time_zone_source) for c in contacts} == {
        "c-event": ("America/Chicago", "event"), "c-zip": ("America/Denver", "zip"),
        "c-state": ("America/Denver", "state"), "c-number": ("America/New_York", "number"),
        "c-default": ("America/Phoenix", "default"),
    }
    # what CXone gets: a timeZone cell per row, a timeZone custom field per v2 item, inside the size model
    rows = list(csv.DictReader(io.StringIO(protocol.call_list_csv(contacts, time_zone_column="timeZone"))))
    assert {r["externalId"]: r["timeZone"] for r in rows} == {c.contact_id: c.time_zone for c in contacts}
    for c in contacts:
        item = protocol.v2_item(c)
        assert item["customFields"]["timeZone"] == c.time_zone
        assert c.item_bytes is not None and c.item_bytes >= len(json.dumps(item).encode()) + 2


async def test_an_opt_in_without_a_zone_is_audited_not_sent_when_refused(kafka_bootstrap: str,
                                                                         topic_factory: Any) -> None:
    env = Env(kafka_bootstrap, topic_factory)
    records = [located("c-known", "212-345-6789", state="NY"), located("c-unknown", "800-345-6793")]
    async with pipeline(env, unknown="refuse"):
        send(kafka_bootstrap, env.topics["contacts"], records)
        await until(lambda: len(env.emitted_phones()) == 1, timeout=20)
        # the audit record is acknowledged, then its record settles and is committed
        await until(lambda: committed(kafka_bootstrap, env.group, env.topics["contacts"]) == {0: 2}, timeout=20)
    assert [(c.contact_id, c.time_zone) for b in env.batches for c in b.contacts] == [("c-known", "America/New_York")]
    [audit] = env.audits(1)
    assert (audit["contact_id"], audit["reason"], audit["check_stage"], audit["phone_e164"], audit["list_name"]) == (
        "c-unknown", "NO_TIME_ZONE", "ARRIVAL", None, None)  # no phone number on an output topic


async def test_an_opt_in_without_a_zone_is_sent_without_one_by_default(kafka_bootstrap: str,
                                                                       topic_factory: Any) -> None:
    env = Env(kafka_bootstrap, topic_factory)
    async with pipeline(env):
        send(kafka_bootstrap, env.topics["contacts"], [located("c-unknown", "800-345-6793")])
        await until(lambda: len(env.emitted_phones()) == 1, timeout=20)
    [contact] = [c for b in env.batches for c in b.contacts]
    assert (contact.time_zone, contact.time_zone_source) == ("", "unknown")
    assert "timeZone" not in protocol.v2_item(contact)["customFields"]
