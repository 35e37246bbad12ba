"""Fault tests of the whole connector: each ends with the exact expected set and nothing lost."""

from __future__ import annotations

import asyncio

import pytest
from e2e_helpers import (
    CONTACT,
    DNC_ENTRY,
    WEBHOOK,
    SimFactory,
    SimInspector,
    Topics,
    check_run,
    connector_config,
    dead_letters,
    deliver,
    expected_phones,
    produce,
    running,
    sample,
    settings_of,
    statuses_seen,
    wait_committed_to_end,
)

from connector.cli.sample_data import KeyedRecord
from connector.simulator import (
    ErrorFaults,
    FaultSettings,
    JobFaults,
    JobSettings,
    RateLimitFaults,
    WebSocketFaults,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(60)]

#: Jobs slow enough (about 1 s of work per run) that socket faults hit them mid-flight.
SLOW_JOBS = JobSettings(items_per_second=120.0, concurrency=4, tick_s=0.01)


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
async def test_429_storm(retry_after: bool, kafka_bootstrap: str, e2e_topics: Topics,
                         start_sim: SimFactory) -> None:
    storm = RateLimitFaults(enabled=True, requests_per_second=3.0, burst=1, retry_after=retry_after)
    sim = await start_sim(FaultSettings(rate_limit=storm))
    data = sample(count=300, contacts=120, seed=21)
    await deliver(kafka_bootstrap, e2e_topics, sim.url, data)
    await check_run(kafka_bootstrap, e2e_topics, sim.url, "v2", expected_phones(data, "v2"))
    async with SimInspector(sim.url) as insp:
        assert "429" in statuses_seen(await insp.requests())


async def test_twenty_percent_5xx(kafka_bootstrap: str, e2e_topics: Topics, start_sim: SimFactory) -> None:
    sim = await start_sim(FaultSettings(seed=3, errors=ErrorFaults(rate=0.2)))
    data = sample(count=300, contacts=120, seed=22)
    await deliver(kafka_bootstrap, e2e_topics, sim.url, data)
    await check_run(kafka_bootstrap, e2e_topics, sim.url, "v2", expected_phones(data, "v2"))
    async with SimInspector(sim.url) as insp:
        seen = statuses_seen(await insp.requests())
    assert seen & {"500", "502", "503"}


@pytest.mark.parametrize("mode", ["drops", "silent"])
async def test_websocket_drops_and_dead_socket(mode: str, kafka_bootstrap: str, e2e_topics: Topics,
                                               start_sim: SimFactory) -> None:
    ws = (WebSocketFaults(drop_every_s=0.7, drop_mode="abort") if mode == "drops"
          else WebSocketFaults(silent_after_s=0.5))
    sim = await start_sim(FaultSettings(websocket=ws), jobs=SLOW_JOBS)
    data = sample(count=300, contacts=120, seed=23)
    await deliver(kafka_bootstrap, e2e_topics, sim.url, data)
    await check_run(kafka_bootstrap, e2e_topics, sim.url, "v2", expected_phones(data, "v2"))
    async with SimInspector(sim.url) as insp:
        by_endpoint = (await insp.requests())["byEndpoint"]
    sockets = sum(n for ep, counts in by_endpoint.items() if "events" in ep for n in counts.values())
    assert sockets >= 2  # the connector reconnected
    assert any("/jobs/" in ep for ep in by_endpoint)  # and polled while the socket was down


async def test_jobs_failing_once_are_resubmitted(kafka_bootstrap: str, e2e_topics: Topics,
                                                 start_sim: SimFactory) -> None:
    sim = await start_sim(FaultSettings(jobs=JobFaults(fail_first=2)))
    data = sample(count=300, contacts=120, seed=24)
    await deliver(kafka_bootstrap, e2e_topics, sim.url, data)
    out = await check_run(kafka_bootstrap, e2e_topics, sim.url, "v2", expected_phones(data, "v2"))
    assert len(out.events_of("FAILED")) == 2 and len(out.events_of("RETRYING")) == 2
    retried = {e["batch_id"] for e in out.events_of("RETRYING")}
    assert all(any(e["batch_id"] == b and e["attempt"] == 2 for e in out.events_of("COMPLETED")) for b in retried)
    assert [j["status"] for j in out.sim_jobs].count("FAILED") == 2
    assert out.dead and {d.stage for d in out.dead} == {"normalise"}  # no batch was dead-lettered


async def test_webhook_down_for_the_first_tries(kafka_bootstrap: str, e2e_topics: Topics,
                                                start_sim: SimFactory) -> None:
    sim = await start_sim()
    async with SimInspector(sim.url) as insp:
        await insp.post(f"/_sim/webhooks/{WEBHOOK}/fail?count=4&status=503")
    data = sample(count=300, contacts=120, seed=25)
    await deliver(kafka_bootstrap, e2e_topics, sim.url, data)
    out = await check_run(kafka_bootstrap, e2e_topics, sim.url, "v2", expected_phones(data, "v2"))
    assert all(r["outcome"] == "DELIVERED" for r in out.callback_results)
    assert sum(r["attempts"] - 1 for r in out.callback_results) == 4  # every failure was retried
    async with SimInspector(sim.url) as insp:
        answered = [h["answeredStatus"] for h in await insp.webhook_deliveries()]
    assert answered.count(503) == 4 and answered.count(200) == len(out.callback_results)


async def test_token_expiry_mid_run(kafka_bootstrap: str, e2e_topics: Topics, start_sim: SimFactory) -> None:
    sim = await start_sim(FaultSettings(token_lifetime_s=1.0), jobs=SLOW_JOBS)
    data = sample(count=300, contacts=120, seed=26)
    await deliver(kafka_bootstrap, e2e_topics, sim.url, data)
    await check_run(kafka_bootstrap, e2e_topics, sim.url, "v2", expected_phones(data, "v2"))
    async with SimInspector(sim.url) as insp:
        by_endpoint = (await insp.requests())["byEndpoint"]
    tokens = sum(n for ep, counts in by_endpoint.items() if "token" in ep for n in counts.values())
    assert tokens >= 2


async def test_jobs_always_failing_are_dead_lettered_with_the_reason(
    kafka_bootstrap: str, e2e_topics: Topics, start_sim: SimFactory
) -> None:
    sim = await start_sim(FaultSettings(jobs=JobFaults(failed_fraction=1.0)))
    data = sample(count=300, contacts=120, seed=27)
    first, rest = data.events[:150], data.events[150:]
    produce(kafka_bootstrap, e2e_topics.dnc, data.dnc, DNC_ENTRY)
    produce(kafka_bootstrap, e2e_topics.contacts, first, CONTACT)
    settings = settings_of(connector_config(e2e_topics, kafka_bootstrap, sim.url))
    async with running(settings):
        # every job of the first half fails on every attempt: dead-lettered, then committed
        await wait_committed_to_end(kafka_bootstrap, settings.kafka.group_id, e2e_topics)
        sim.configure_faults(jobs=JobFaults())
        produce(kafka_bootstrap, e2e_topics.contacts, rest, CONTACT)
        await wait_committed_to_end(kafka_bootstrap, settings.kafka.group_id, e2e_topics)
    dead = [d for d in await asyncio.to_thread(dead_letters, kafka_bootstrap, e2e_topics) if d.stage == "job"]
    assert dead
    assert all(d.error_class == "JobFailed" and "ended FAILED" in d.message for d in dead)
    dead_ids = {d.event["event_id"] for d in dead}
    assert dead_ids <= {e.value["event_id"] for e in first if e.value is not None}
    out = await check_run(kafka_bootstrap, e2e_topics, sim.url, "v2", None, data=data, dead_stage="job",
                          settled_statuses=frozenset({"COMPLETED", "FAILED"}))
    assert out.phones < expected_phones(data, "v2")  # some contacts really were lost to the failures
    failed_batches = {e["batch_id"] for e in out.events_of("FAILED")}
    for batch in failed_batches:  # three attempts, each a new job, then the DLQ
        attempts = sorted(e["attempt"] for e in out.events_of("FAILED") if e["batch_id"] == batch)
        assert attempts == [1, 2, 3]
    assert not failed_batches & {e["batch_id"] for e in out.events_of("COMPLETED")}
    assert len(dead) == sum(e["item_count"] for e in out.events_of("FAILED") if e["attempt"] == 3)


async def test_400_dead_letters_only_that_batch(kafka_bootstrap: str, e2e_topics: Topics,
                                                start_sim: SimFactory) -> None:
    sim = await start_sim()
    data = sample(count=300, contacts=120, seed=28)
    bad = KeyedRecord("CBAD00001", {
        "event_id": "evt-bad-email", "contact_id": "CBAD00001", "phone": "+19176230001", "region_hint": None,
        "first_name": "Eve", "last_name": "Mallory", "email": "not an e-mail", "opted_in": True,
        "changed_at": 1_700_000_000_500, "source": "crm", "custom_fields": {},
    })
    data.events.insert(150, bad)
    await deliver(kafka_bootstrap, e2e_topics, sim.url, data)
    dead = [d for d in await asyncio.to_thread(dead_letters, kafka_bootstrap, e2e_topics) if d.stage == "submit"]
    dead_ids = {d.event["event_id"] for d in dead}
    assert "evt-bad-email" in dead_ids
    assert all(d.error_class == "ClientError" and d.message.startswith("HTTP 400") for d in dead)
    assert all("not an e-mail address" in d.message for d in dead)  # the response body is kept
    out = await check_run(kafka_bootstrap, e2e_topics, sim.url, "v2", None, data=data, dead_stage="submit",
                          settled_statuses=frozenset({"COMPLETED", "FAILED"}))
    [refused] = out.events_of("FAILED")  # one batch, refused at submit: no job
    assert refused["job_id"] == "" and "HTTP 400" in (refused["detail"] or "")
    assert len(dead) == refused["item_count"]
    in_batch = {(r["partition"], o) for r in refused["source_ranges"]
                for o in range(r["first_offset"], r["last_offset"] + 1)}
    assert {(d.partition, d.offset) for d in dead} <= in_batch
    assert len({e["batch_id"] for e in out.events_of("COMPLETED")}) >= 3  # the stream kept moving
    assert "+19176230001" not in out.phones
