"""Delivery end to end against the in-process CXone simulator, over real sockets (both profiles).

Each test builds ``Batch``/``ContactEvent`` objects directly, runs a fresh ``Delivery`` with
short backoffs, and checks the simulator's list, the job events, the callback results and
what was settled or dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest

from connector.config import CallbackSettings, CXoneSettings, MonitorSettings, Secret, Settings
from connector.core.models import Batch, ContactEvent, SourceRef, batch_id_for
from connector.cxone.backoff import no_jitter
from connector.cxone.calllists import CallListsClient
from connector.cxone.client import Retrying
from connector.cxone.exceptions import ClientError
from connector.errors import SerdeError
from connector.pipeline.callbacks import verify
from connector.pipeline.delivery import Delivery
from connector.simulator import (
    ErrorFaults,
    FaultSettings,
    JobFaults,
    JobSettings,
    RateLimitFaults,
    Simulator,
    SimulatorConfig,
    WebSocketFaults,
)

WEBHOOK = "delivery-test"
HOOK_SECRET = "hook-secret"


def contact(i: int, topic: str = "crm", partition: int = 0) -> ContactEvent:
    return ContactEvent.of(
        source=SourceRef(topic, partition, i), key=f"c{i}".encode(), raw=b"raw", headers=[],
        produced_at_ms=0, event_id=f"e{i}", contact_id=f"c{i}", phone_e164=f"+1415555{i:04d}",
        opted_in=True, first_name="Ann", last_name=f"Lee{i}", email=f"a{i}@example.com",
        custom_fields={"tier": "gold"}, changed_at_ms=1_705_276_800_000, source_system="crm",
    )


def make_batch(first: int, count: int, *, topic: str = "crm") -> Batch:
    contacts = [contact(i, topic) for i in range(first, first + count)]
    covered = [c.source for c in contacts]
    return Batch(batch_id_for(covered), contacts, covered, "size", time.monotonic())


def settings_for(url: str, profile: str = "v2", **cx: Any) -> Settings:
    base = CXoneSettings(
        profile=profile,  # type: ignore[arg-type]
        base_url=url, client_secret=Secret("connector-secret"), auth_base_url=url,
        access_key_id="ak-id", access_key_secret=Secret("ak-secret"),
        request_timeout_s=3.0, connect_timeout_s=2.0, max_in_flight=2, max_request_attempts=8,
        backoff_initial_s=0.02, backoff_max_s=0.3,
    )
    monitor = MonitorSettings(ping_interval_s=0.3, ping_timeout_s=0.3, poll_interval_s=0.1,
                              poll_interval_max_s=0.8, job_deadline_s=8.0, max_job_attempts=3)
    callbacks = CallbackSettings(urls=(f"{url}/_sim/webhooks/{WEBHOOK}",), secret=Secret(HOOK_SECRET),
                                 max_attempts=6, timeout_s=2.0, backoff_initial_s=0.02, backoff_max_s=0.1)
    return Settings(cxone=replace(base, **cx), monitor=monitor, callbacks=callbacks)


@dataclass
class Recorder:
    """The ingest side's view: job events, callback results, settled and dead batches."""

    job_events: list[dict[str, Any]] = field(default_factory=list)
    callback_results: list[dict[str, Any]] = field(default_factory=list)
    completed: list[Batch] = field(default_factory=list)
    dead: list[tuple[Batch, str, str, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish_job_event(self, record: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # an ack arrives later than the call
        self.job_events.append(record)
        self.changed.set()

    async def publish_callback_result(self, record: dict[str, Any]) -> None:
        self.callback_results.append(record)
        self.changed.set()

    async def on_completed(self, batch: Batch) -> None:
        self.completed.append(batch)
        self.changed.set()

    async def on_dead(self, batch: Batch, *, stage: str, error_class: str, message: str) -> None:
        self.dead.append((batch, stage, error_class, message))
        self.changed.set()

    def delivery(self, settings: Settings) -> Delivery:
        return Delivery(settings, publish_job_event=self.publish_job_event,
                        publish_callback_result=self.publish_callback_result,
                        on_completed=self.on_completed, on_dead=self.on_dead, jitter=no_jitter)

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 12.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self.changed.clear()
                await self.changed.wait()

    def statuses(self, batch_id: str) -> list[str]:
        return [e["status"] for e in self.job_events if e["batch_id"] == batch_id]


async def sim_get(url: str, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url + path) as resp:
        resp.raise_for_status()
        return await resp.json()


async def sim_post(url: str, path: str, body: Any) -> Any:
    async with aiohttp.ClientSession() as s, s.post(url + path, json=body) as resp:
        resp.raise_for_status()
        return await resp.json(content_type=None)


async def run_batches(
    rec: Recorder, settings: Settings, batches: list[Batch],
    until: Callable[[], bool] | None = None, timeout: float = 12.0,
    during: Callable[[Delivery], Awaitable[None]] | None = None,
) -> Delivery:
    """Submit ``batches`` on a fresh Delivery and wait until each is completed or dead."""
    delivery = rec.delivery(settings)
    await delivery.start()
    try:
        for batch in batches:
            await delivery.submit(batch)
        if during is not None:
            await during(delivery)
        want = {b.batch_id for b in batches}
        await rec.wait_for(until or (lambda: want <= {b.batch_id for b in rec.completed}
                                     | {d[0].batch_id for d in rec.dead}), timeout)
        assert await delivery.drain(5.0)
    finally:
        await delivery.close()
    return delivery


V2_LIST = CXoneSettings().contact_list_id
FAST_JOBS = JobSettings(items_per_second=200.0, concurrency=4, tick_s=0.01)


async def start_sim(faults: FaultSettings | None = None, jobs: JobSettings = FAST_JOBS) -> Simulator:
    sim = Simulator(SimulatorConfig(jobs=jobs, faults=faults or FaultSettings()))
    await sim.start(host="127.0.0.1", port=0)
    return sim


@pytest.fixture
async def sim() -> Any:
    s = await start_sim()
    yield s
    await s.stop()


async def list_phones(url: str, list_id: str) -> set[str]:
    body = await sim_get(url, f"/_sim/lists/{list_id}/contacts")
    return {c["phoneNumber"] for c in body["contacts"]}


def phones(*batches: Batch) -> set[str]:
    return {c.phone_e164 for b in batches for c in b.contacts}


def assert_completed_in_order(rec: Recorder, batch: Batch) -> None:
    events = [e for e in rec.job_events if e["batch_id"] == batch.batch_id]
    by_job: dict[str, list[str]] = {}
    for e in events:
        by_job.setdefault(e["job_id"], []).append(e["status"])
    for statuses in by_job.values():
        if "COMPLETED" in statuses:
            assert statuses[0] == "SUBMITTED" and statuses[-1] == "COMPLETED"
    assert all(e["source_ranges"] == [{"topic": t, "partition": p, "first_offset": a, "last_offset": b}
                                      for t, p, a, b in batch.source_ranges()] for e in events)


async def test_v2_happy_path_settles_publishes_and_calls_back(sim: Simulator) -> None:
    rec = Recorder()
    batches = [make_batch(0, 5), make_batch(5, 5), make_batch(10, 3)]
    await run_batches(rec, settings_for(sim.url), batches)
    assert {b.batch_id for b in rec.completed} == {b.batch_id for b in batches}
    assert rec.dead == []
    assert await list_phones(sim.url, V2_LIST) == phones(*batches)
    for batch in batches:
        assert_completed_in_order(rec, batch)
        [done] = [e for e in rec.job_events if e["batch_id"] == batch.batch_id and e["status"] == "COMPLETED"]
        assert done["item_count"] == len(batch.contacts) and done["attempt"] == 1 and done["profile"] == "v2"
        assert done["list_id"] == V2_LIST and done["progress"] == 100 and isinstance(done["time"], int)
    # callbacks run in the background; drain() waited for them
    assert sorted(r["batch_id"] for r in rec.callback_results) == sorted(b.batch_id for b in batches)
    assert all(r["outcome"] == "DELIVERED" and r["http_status"] == 200 and r["attempts"] == 1
               for r in rec.callback_results)
    hooks = await sim_get(sim.url, f"/_sim/webhooks/{WEBHOOK}")
    assert hooks["count"] == 3
    for d in hooks["deliveries"]:
        headers = {k.lower(): v for k, v in d["headers"].items()}
        assert verify(d["body"].encode(), HOOK_SECRET, headers["x-signature-sha256"])
        assert len(headers["idempotency-key"]) == 64


async def test_call_lists_happy_path_chunks_into_several_jobs(sim: Simulator) -> None:
    rec = Recorder()
    settings = settings_for(sim.url, profile="call-lists")
    client = CallListsClient(settings.cxone, Retrying(settings.cxone, jitter=no_jitter), max_records=4)
    delivery = Delivery(settings, publish_job_event=rec.publish_job_event,
                        publish_callback_result=rec.publish_callback_result,
                        on_completed=rec.on_completed, on_dead=rec.on_dead, client=client, jitter=no_jitter)
    batches = [make_batch(0, 10), make_batch(10, 3)]
    await delivery.start()
    try:
        for b in batches:
            await delivery.submit(b)
        await rec.wait_for(lambda: len(rec.completed) == 2)
        assert await delivery.drain(5.0)
    finally:
        await delivery.close()
        await client.close()
    assert rec.dead == []
    completed_jobs = {e["job_id"] for e in rec.job_events
                      if e["status"] == "COMPLETED" and e["batch_id"] == batches[0].batch_id}
    assert len(completed_jobs) == 3  # 10 records in files of at most 4
    assert sorted(e["item_count"] for e in rec.job_events
                  if e["status"] == "COMPLETED" and e["batch_id"] == batches[0].batch_id) == [2, 4, 4]
    body = await sim_get(sim.url, f"/_sim/lists/{client.list_id}/contacts")
    assert len(body["contacts"]) == 13
    assert all(e["profile"] == "call-lists" for e in rec.job_events)


@pytest.mark.parametrize("retry_after", [True, False])
async def test_429_storm_delivers_everything(retry_after: bool) -> None:
    faults = FaultSettings(rate_limit=RateLimitFaults(enabled=True, requests_per_second=8.0, burst=2,
                                                      retry_after=retry_after))
    sim = await start_sim(faults)
    try:
        rec = Recorder()
        batches = [make_batch(i * 4, 4) for i in range(4)]
        await run_batches(rec, settings_for(sim.url, max_request_attempts=30), batches, timeout=14.0)
        assert rec.dead == [] and len(rec.completed) == 4
        assert await list_phones(sim.url, V2_LIST) == phones(*batches)
        counts = (await sim_get(sim.url, "/_sim/requests"))["byEndpoint"]
        assert any("429" in by_status for by_status in counts.values())  # the storm really happened
    finally:
        await sim.stop()


async def test_twenty_percent_5xx_delivers_everything() -> None:
    sim = await start_sim(FaultSettings(seed=7, errors=ErrorFaults(rate=0.2)))
    try:
        rec = Recorder()
        batches = [make_batch(i * 5, 5) for i in range(5)]
        await run_batches(rec, settings_for(sim.url, max_request_attempts=20), batches)
        assert rec.dead == [] and len(rec.completed) == 5
        assert await list_phones(sim.url, V2_LIST) == phones(*batches)
        counts = (await sim_get(sim.url, "/_sim/requests"))["byEndpoint"]
        assert any(s.startswith("5") for by_status in counts.values() for s in by_status)
    finally:
        await sim.stop()


@pytest.mark.parametrize("mode", ["drop", "silent"])
async def test_websocket_drops_and_dead_socket_fall_back_to_polling(mode: str) -> None:
    ws = (WebSocketFaults(drop_every_s=0.4, drop_mode="abort") if mode == "drop"
          else WebSocketFaults(silent_after_s=0.2))
    slow = JobSettings(items_per_second=15.0, concurrency=4, tick_s=0.01)  # jobs take ~1 s
    sim = await start_sim(FaultSettings(websocket=ws), jobs=slow)
    try:
        rec = Recorder()
        batches = [make_batch(i * 8, 8) for i in range(3)]
        delivery = await run_batches(rec, settings_for(sim.url), batches)
        assert rec.dead == [] and len(rec.completed) == 3
        assert await list_phones(sim.url, V2_LIST) == phones(*batches)
        assert delivery._monitor is not None and delivery._monitor.connects >= 2  # reconnected
        polls = (await sim_get(sim.url, "/_sim/requests"))["byEndpoint"]
        assert any("/api/v2/outbound/jobs/" in endpoint for endpoint in polls)  # polled while down
    finally:
        await sim.stop()


async def test_job_failing_once_is_resubmitted_with_a_new_key() -> None:
    sim = await start_sim(FaultSettings(jobs=JobFaults(fail_first=1)))
    try:
        rec = Recorder()
        batch = make_batch(0, 5)
        await run_batches(rec, settings_for(sim.url), [batch])
        assert [b.batch_id for b in rec.completed] == [batch.batch_id] and rec.dead == []
        statuses = rec.statuses(batch.batch_id)
        assert statuses[0] == "SUBMITTED" and "FAILED" in statuses and "RETRYING" in statuses
        assert statuses[-1] == "COMPLETED"
        final = [e for e in rec.job_events if e["status"] == "COMPLETED"][0]
        assert final["attempt"] == 2
        jobs = (await sim_get(sim.url, "/_sim/jobs"))["jobs"]
        assert len({j["idempotencyKey"] for j in jobs}) == 2
        assert await list_phones(sim.url, V2_LIST) == phones(batch)
    finally:
        await sim.stop()


async def test_job_always_failing_is_dead_lettered_with_the_reason() -> None:
    sim = await start_sim(FaultSettings(jobs=JobFaults(failed_fraction=1.0)))
    try:
        rec = Recorder()
        batch = make_batch(0, 4)
        await run_batches(rec, settings_for(sim.url), [batch])
        assert rec.completed == []
        [(dead, stage, error_class, message)] = rec.dead
        assert dead.batch_id == batch.batch_id and stage == "job" and error_class == "JobFailed"
        assert "FAILED" in message
        assert rec.statuses(batch.batch_id).count("RETRYING") == 2  # 3 attempts in all
        assert [r["outcome"] for r in rec.callback_results] == ["DELIVERED"]
        hooks = await sim_get(sim.url, f"/_sim/webhooks/{WEBHOOK}")
        assert '"status":"DEAD_LETTERED"' in hooks["deliveries"][0]["body"]
    finally:
        await sim.stop()


async def test_token_expiry_mid_run_refreshes() -> None:
    sim = await start_sim(FaultSettings(token_lifetime_s=1.0),
                          jobs=JobSettings(items_per_second=20.0, concurrency=4, tick_s=0.01))
    try:
        rec = Recorder()
        batches = [make_batch(i * 5, 5) for i in range(4)]

        async def trickle(delivery: Delivery) -> None:
            await asyncio.sleep(1.2)  # past the first token's life
            for b in [make_batch(100, 3), make_batch(103, 3)]:
                batches.append(b)
                await delivery.submit(b)

        delivery = await run_batches(rec, settings_for(sim.url), batches, during=trickle,
                                     until=lambda: len(rec.completed) == 6)
        assert rec.dead == []
        assert await list_phones(sim.url, V2_LIST) == phones(*batches)
        assert getattr(delivery.client, "tokens").refreshes >= 2
    finally:
        await sim.stop()


async def test_400_dead_letters_only_that_batch(sim: Simulator) -> None:
    rec = Recorder()
    good1, bad, good2 = make_batch(0, 3), make_batch(3, 3), make_batch(6, 3)
    bad.contacts[1].phone_e164 = "not-a-phone"
    await run_batches(rec, settings_for(sim.url), [good1, bad, good2])
    assert {b.batch_id for b in rec.completed} == {good1.batch_id, good2.batch_id}
    [(dead, stage, error_class, message)] = rec.dead
    assert dead.batch_id == bad.batch_id and stage == "submit" and error_class == ClientError.__name__
    assert message.startswith("HTTP 400")
    assert rec.statuses(bad.batch_id) == ["FAILED"]
    assert await list_phones(sim.url, V2_LIST) == phones(good1, good2)


async def test_replay_after_restart_makes_no_second_job(sim: Simulator) -> None:
    batch = make_batch(0, 5)
    first = Recorder()
    await run_batches(first, settings_for(sim.url), [batch])
    again = Recorder()  # a "restart": new Delivery, new session, same batch rebuilt from the same offsets
    rebuilt = make_batch(0, 5)
    assert rebuilt.idempotency_key() == batch.idempotency_key()
    await run_batches(again, settings_for(sim.url), [rebuilt])
    jobs = (await sim_get(sim.url, "/_sim/jobs"))["jobs"]
    assert len(jobs) == 1
    assert [e["job_id"] for e in again.job_events if e["status"] == "COMPLETED"] == [jobs[0]["jobId"]]
    assert len(again.completed) == 1


async def test_webhook_down_for_first_tries_never_blocks_settlement(sim: Simulator) -> None:
    await sim_post(sim.url, f"/_sim/webhooks/{WEBHOOK}/fail?count=3&status=503", {})
    rec = Recorder()
    batch = make_batch(0, 3)
    await run_batches(rec, settings_for(sim.url), [batch])
    [result] = rec.callback_results
    assert result["outcome"] == "DELIVERED" and result["attempts"] == 4 and result["http_status"] == 200
    hooks = await sim_get(sim.url, f"/_sim/webhooks/{WEBHOOK}")
    assert [d["answeredStatus"] for d in hooks["deliveries"]] == [503, 503, 503, 200]
    assert len({d["headers"].get("Idempotency-Key") for d in hooks["deliveries"]}) == 1


async def test_webhook_down_for_good_is_reported_failed(sim: Simulator) -> None:
    await sim_post(sim.url, f"/_sim/webhooks/{WEBHOOK}/fail?count=100&status=500", {})
    rec = Recorder()
    batch = make_batch(0, 2)
    await run_batches(rec, settings_for(sim.url), [batch])
    assert len(rec.completed) == 1  # settled regardless of the webhook
    [result] = rec.callback_results
    assert result["outcome"] == "FAILED" and result["attempts"] == 6 and result["http_status"] == 500


async def test_submit_blocks_when_max_in_flight_reached() -> None:
    sim = await start_sim(jobs=JobSettings(items_per_second=10.0, concurrency=4, tick_s=0.01))
    try:
        rec = Recorder()
        delivery = rec.delivery(settings_for(sim.url, max_in_flight=1))
        await delivery.start()
        try:
            await delivery.submit(make_batch(0, 5))
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await delivery.submit(make_batch(5, 5))
            assert delivery.in_flight == 1
            await rec.wait_for(lambda: len(rec.completed) == 1)
            await delivery.submit(make_batch(5, 5))  # a slot is free again
            await rec.wait_for(lambda: len(rec.completed) == 2)
        finally:
            await delivery.close()
    finally:
        await sim.stop()


async def test_submit_exhausting_retries_is_retried_then_dead_lettered() -> None:
    sim = await start_sim(FaultSettings(paths=("/api/v2/outbound/contactlistitems",),
                                        errors=ErrorFaults(rate=1.0, statuses=(503,))))
    try:
        rec = Recorder()
        batch = make_batch(0, 2)
        await run_batches(rec, settings_for(sim.url, max_request_attempts=2), [batch])
        [(dead, stage, error_class, message)] = rec.dead
        assert stage == "submit" and error_class == "RetriesExhaustedError" and "503" in message
        assert rec.statuses(batch.batch_id) == ["RETRYING", "RETRYING"]
    finally:
        await sim.stop()


async def test_job_without_news_past_deadline_is_reported_unknown() -> None:
    sim = await start_sim(jobs=JobSettings(items_per_second=1.0, concurrency=1, tick_s=0.01))
    try:
        rec = Recorder()
        settings = settings_for(sim.url)
        monitor = replace(settings.monitor, job_deadline_s=0.6, max_job_attempts=1)
        settings = replace(settings, monitor=monitor)
        delivery = rec.delivery(settings)
        await delivery.start()
        try:
            await delivery.submit(make_batch(0, 20))  # runs ~20 s, holding the only job slot
            stuck = make_batch(20, 2)
            await delivery.submit(stuck)  # stays QUEUED: no news
            await rec.wait_for(lambda: bool(rec.dead))
        finally:
            await delivery.close()
        [(dead, stage, error_class, message)] = rec.dead
        assert dead.batch_id == stuck.batch_id and stage == "job" and error_class == "JobUnknown"
        assert rec.statuses(stuck.batch_id) == ["SUBMITTED", "UNKNOWN"]
    finally:
        await sim.stop()


async def test_a_job_event_that_can_never_be_published_stops_delivery(sim: Simulator) -> None:
    """A non-retriable publish error (here: a record the schema refuses) is not retried for
    ever: the batch stays unsettled and Delivery.wait() raises it, so the app stops."""
    rec = Recorder()

    async def refuse(record: dict[str, Any]) -> None:
        raise SerdeError("invalid record: the schema refuses it")

    delivery = Delivery(settings_for(sim.url), publish_job_event=refuse,
                        publish_callback_result=rec.publish_callback_result,
                        on_completed=rec.on_completed, on_dead=rec.on_dead, jitter=no_jitter)
    await delivery.start()
    try:
        await delivery.submit(make_batch(0, 3))
        with pytest.raises(SerdeError):
            async with asyncio.timeout(10):
                await delivery.wait()
    finally:
        await delivery.close()
    assert rec.completed == [] and rec.dead == []


@pytest.mark.parametrize("error", [TypeError("a bug"), KeyError("job_id")], ids=["TypeError", "KeyError"])
async def test_a_programming_error_while_publishing_a_job_event_stops_delivery(
        sim: Simulator, error: Exception) -> None:
    """Before issue 12 only ConnectorErrors counted as fatal: a bug was retried for ever."""
    rec = Recorder()
    calls = 0

    async def broken(record: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise error

    delivery = Delivery(settings_for(sim.url), publish_job_event=broken,
                        publish_callback_result=rec.publish_callback_result,
                        on_completed=rec.on_completed, on_dead=rec.on_dead, jitter=no_jitter)
    await delivery.start()
    try:
        await delivery.submit(make_batch(0, 3))
        with pytest.raises(type(error)):
            async with asyncio.timeout(10):
                await delivery.wait()
    finally:
        await delivery.close()
    assert calls <= 3 and rec.completed == []  # each event tried once (SUBMITTED, progress, end), never retried


@pytest.mark.parametrize("stage", ["settle", "dead-letter"])
async def test_a_batch_that_cannot_be_settled_stops_delivery_instead_of_stalling(stage: str) -> None:
    """Delivery._settle/_dead used to log and return: the batch never settled, commits stopped,
    and /healthz stayed green."""
    sim = await start_sim(FaultSettings(jobs=JobFaults(failed_fraction=1.0 if stage == "dead-letter" else 0.0)))
    rec = Recorder()

    async def refuse(batch: Batch, **_: Any) -> None:
        raise RuntimeError(f"cannot {stage}")

    delivery = Delivery(settings_for(sim.url), publish_job_event=rec.publish_job_event,
                        publish_callback_result=rec.publish_callback_result,
                        on_completed=refuse, on_dead=refuse, jitter=no_jitter)
    await delivery.start()
    try:
        await delivery.submit(make_batch(0, 3))
        with pytest.raises(RuntimeError, match=f"cannot {stage}"):
            async with asyncio.timeout(20):
                await delivery.wait()
    finally:
        await delivery.close()
        await sim.stop()


async def test_a_monitor_poll_loop_that_raises_is_restarted_and_the_job_still_ends(sim: Simulator) -> None:
    """The poll loop used to die on any error that was not a CXoneError, silently."""
    rec = Recorder()
    settings = replace(settings_for(sim.url), monitor=replace(settings_for(sim.url).monitor, use_websocket=False))
    delivery = rec.delivery(settings)
    await delivery.start()
    assert delivery._monitor is not None
    client = delivery._monitor._client
    real = client.job_status
    failures = 0

    async def flaky(job_id: str) -> Any:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise RuntimeError("unexpected")
        return await real(job_id)

    client.job_status = flaky  # type: ignore[method-assign]
    try:
        batch = make_batch(0, 3)
        await delivery.submit(batch)
        await rec.wait_for(lambda: batch.batch_id in {b.batch_id for b in rec.completed}, timeout=15)
    finally:
        await delivery.close()
    assert failures == 2 and delivery.supervisor.failure is None
