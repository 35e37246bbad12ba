"""An opt-out that arrives after its opt-in reached CXone still keeps the number from being dialled.

The whole connector runs in-process (real broker, simulator over real sockets) with the
call-lists profile and ``cxone.dnc_group_id``: opt-ins are delivered first, then half the
contacts opt out, then two of those opt in again. The simulator's dialable view (the list
minus its DNC groups) must equal exactly the contacts whose latest event is an opt-in, and
every offset must settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Producer

from connector.app import App
from connector.config import (
    MonitorSettings,
    Secret,
    ServerSettings,
    Settings,
    TopicSettings,
    WindowSettings,
    load_settings,
)
from connector.errors import ConfigError
from connector.serde.codec import AvroCodec
from connector.simulator import Simulator, SimulatorConfig

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(60)]

GROUP = "crm-opt-outs"
PHONES = [f"+1212555{n:04d}" for n in range(1000, 1040)]  # 212-555-xxxx: valid for region US


def event(i: int, opted_in: bool, seq: int) -> dict[str, Any]:
    return {"event_id": f"e{seq}", "contact_id": f"c{i}", "phone": PHONES[i], "region_hint": None,
            "first_name": "Ada", "last_name": "Lovelace", "email": None, "opted_in": opted_in,
            "changed_at": 1_700_000_000_000 + seq, "source": "crm", "custom_fields": {}}


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    codec = AvroCodec("ContactOptInChanged")
    producer = Producer({"bootstrap.servers": bootstrap})
    for rec in records:
        producer.produce(topic, key=rec["contact_id"].encode(), value=codec.encode(rec))
    assert producer.flush(10) == 0


async def sim_get(url: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def until(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def settings_for(bootstrap: str, topics: TopicSettings, sim_url: str) -> Settings:
    base = Settings()
    return replace(
        base,
        kafka=replace(base.kafka, bootstrap_servers=bootstrap, group_id=f"retract-{uuid.uuid4().hex}",
                      consume_batch_size=100, poll_timeout_s=0.05),
        topics=topics,
        window=WindowSettings(max_items=10, max_bytes=1_000_000, max_age_s=0.2),
        cxone=replace(base.cxone, profile="call-lists", auth_base_url=sim_url,
                      client_secret=Secret("connector-secret"), access_key_id="ak-id",
                      access_key_secret=Secret("ak-secret"), dnc_group_id=GROUP,
                      backoff_initial_s=0.02, backoff_max_s=0.3),
        monitor=MonitorSettings(poll_interval_s=0.1, poll_interval_max_s=0.3, job_deadline_s=10.0),
        server=replace(ServerSettings(), host="127.0.0.1", port=0),
        shutdown_deadline_s=5.0,
    )


async def test_opt_out_after_delivery_reaches_the_dnc_group(kafka_bootstrap: str, topic_factory: Any) -> None:
    topics = TopicSettings(
        contacts=topic_factory("optin", partitions=2), dnc=topic_factory("dnc", config={"cleanup.policy": "compact"}),
        job_events=topic_factory("jobs"), callback_results=topic_factory("callbacks"),
        suppressed=topic_factory("suppressed"), dlq=topic_factory("dlq"),
    )
    async with Simulator(SimulatorConfig()) as sim:
        app = App(settings_for(kafka_bootstrap, topics, sim.url))
        run = asyncio.create_task(app.run())
        try:
            produce(kafka_bootstrap, topics.contacts, [event(i, True, i) for i in range(len(PHONES))])

            async def delivered() -> bool:
                lists = (await sim_get(f"{sim.url}/_sim/lists"))["lists"]
                return bool(lists) and lists[0]["contactCount"] == len(PHONES)

            await until("every opt-in on the calling list", delivered, 20)
            list_id = (await sim_get(f"{sim.url}/_sim/lists"))["lists"][0]["listId"]

            opted_out = range(0, len(PHONES), 2)
            produce(kafka_bootstrap, topics.contacts, [event(i, False, 100 + i) for i in opted_out])
            still_in = {PHONES[i].lstrip("+") for i in range(len(PHONES)) if i % 2}

            async def scrubbed() -> bool:
                view = await sim_get(f"{sim.url}/_sim/lists/{list_id}/contacts?dialable=true")
                return {c["phoneNumber"].lstrip("+") for c in view["contacts"]} == still_in

            await until("the dialable view to drop every opted-out number", scrubbed, 20)

            # Two of them opt in again: the CRM's latest consent wins, they are released.
            again = [0, 2]
            produce(kafka_bootstrap, topics.contacts, [event(i, True, 200 + i) for i in again])
            still_in |= {PHONES[i].lstrip("+") for i in again}
            await until("the re-opted-in numbers to be dialable again", scrubbed, 20)

            async def settled() -> bool:
                total = len(PHONES) + len(opted_out) + len(again)
                return app.ingest.tracker.unsettled == 0 and app.ingest.stats.consumed == total

            await until("every record settled", settled, 10)
            groups = await sim_get(f"{sim.url}/_sim/dnc-groups")
        finally:
            app.request_stop()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(20):
                    await run
    assert run.result() == 0
    assert app.pusher is not None
    assert app.pusher.done == {"add": len(opted_out), "remove": len(again)}
    blob = str(groups)
    assert all(PHONES[i].lstrip("+") in blob for i in opted_out if i not in again)
    assert not any(PHONES[i].lstrip("+") in blob for i in [*again, *range(1, len(PHONES), 2)])


def test_v2_rejects_a_dnc_group() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"cxone": {"profile": "v2", "dnc_group_id": "g"}}, env={})
    assert info.value.problems[0][0] == "cxone.dnc_group_id"
