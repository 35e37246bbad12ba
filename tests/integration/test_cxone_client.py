"""Profile clients against the in-process simulator: auth, retries, Retry-After, 401 refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from integration_helpers import simple_batch

from connector.config import CXoneSettings, Secret
from connector.core.models import Batch
from connector.cxone.backoff import no_jitter
from connector.cxone.calllists import CallListsClient
from connector.cxone.client import Retrying, make_client
from connector.cxone.exceptions import AuthError, ClientError, RetriesExhaustedError
from connector.cxone.protocol import COMPLETED, IN_PROGRESS, QUEUED
from connector.cxone.v2 import V2Client
from connector.simulator import ErrorFaults, FaultSettings, RateLimitFaults, Simulator, SimulatorConfig


def batch(n: int = 3, first: int = 0) -> Batch:
    return simple_batch(first, n)


def cx(url: str, **kw: object) -> CXoneSettings:
    base = CXoneSettings(base_url=url, auth_base_url=url, client_secret=Secret("connector-secret"),
                         access_key_id="ak-id", access_key_secret=Secret("ak-secret"),
                         request_timeout_s=3.0, connect_timeout_s=2.0, max_request_attempts=6,
                         backoff_initial_s=0.01, backoff_max_s=0.08)
    return replace(base, **kw)  # type: ignore[arg-type]


class Sleeps:
    """Records the delays the retry loop asks for, and does not wait them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator(SimulatorConfig())
    await s.start(host="127.0.0.1", port=0)
    yield s
    await s.stop()


async def test_v2_submit_and_poll(sim: Simulator) -> None:
    client = make_client(cx(sim.url))
    try:
        [job] = await client.submit(batch())
        assert job.item_count == 3
        update = await client.job_status(job.job_id)
        assert update.job_id == job.job_id and update.status in {QUEUED, IN_PROGRESS, COMPLETED}
        assert client.push_url() == sim.url.replace("http://", "ws://") + "/api/v2/events"
    finally:
        await client.close()


async def test_401_refreshes_the_token_once(sim: Simulator) -> None:
    client = make_client(cx(sim.url))
    assert isinstance(client, V2Client)
    try:
        await client.submit(batch(2))
        sim.state.reset()  # the simulator forgets every token it issued
        await client.submit(batch(2, first=10))
        assert client.tokens.refreshes == 2
    finally:
        await client.close()


async def test_wrong_secret_is_fatal_auth_error(sim: Simulator) -> None:
    client = make_client(cx(sim.url, client_secret=Secret("wrong")))
    try:
        with pytest.raises(AuthError) as info:
            await client.submit(batch())
        assert info.value.status == 401 and "wrong" not in str(info.value)
    finally:
        await client.close()


@pytest.mark.parametrize("retry_after", [True, False])
async def test_429_honours_retry_after_or_backs_off(sim: Simulator, retry_after: bool) -> None:
    sim.configure_faults(paths=("/api/v2/outbound",), rate_limit=RateLimitFaults(
        enabled=True, requests_per_second=0.5, burst=1, retry_after=retry_after))
    sleeps = Sleeps()
    settings = cx(sim.url, max_request_attempts=4)
    client = V2Client(settings, Retrying(settings, jitter=no_jitter, sleep=sleeps))
    try:
        await client.submit(batch())  # takes the one token in the bucket
        with pytest.raises(RetriesExhaustedError) as info:
            await client.submit(batch(first=5))  # the bucket refills only after 2 s; sleeps are instant
        assert info.value.attempts == 4 and info.value.last.retriable
        assert len(sleeps.delays) == 3
        if retry_after:
            assert all(d >= 1.0 for d in sleeps.delays)  # whole seconds from the server
        else:
            assert sleeps.delays == [0.01, 0.02, 0.04]  # capped exponential (jitter off)
    finally:
        await client.close()


async def test_5xx_retried_then_400_not_retried(sim: Simulator) -> None:
    sim.configure_faults(paths=("/api/v2/outbound",), errors=ErrorFaults(rate=1.0, statuses=(503,)))
    sleeps = Sleeps()
    settings = cx(sim.url, max_request_attempts=3)
    client = V2Client(settings, Retrying(settings, jitter=no_jitter, sleep=sleeps))
    try:
        with pytest.raises(RetriesExhaustedError) as info:
            await client.submit(batch())
        assert getattr(info.value.last, "status", None) == 503 and len(sleeps.delays) == 2
        sim.configure_faults(FaultSettings())
        sleeps.delays.clear()
        bad = batch()
        bad.contacts[0].phone_e164 = "12"
        with pytest.raises(ClientError) as fatal:
            await client.submit(bad)
        assert fatal.value.status == 400 and fatal.value.body and sleeps.delays == []
    finally:
        await client.close()


async def test_call_lists_discovery_upload_and_replay(sim: Simulator) -> None:
    client = make_client(cx(sim.url, profile="call-lists"))
    assert isinstance(client, CallListsClient)
    try:
        b = batch(5)
        jobs = await client.submit(b)
        assert [j.item_count for j in jobs] == [5]
        assert (await client.auth.api_endpoint()).startswith("http://127.0.0.1")
        replay = await client.submit(b)  # same idempotency key, same file name
        assert [j.job_id for j in replay] == [j.job_id for j in jobs]
        update = await client.job_status(jobs[0].job_id)
        assert update.job_id == jobs[0].job_id
    finally:
        await client.close()


async def test_call_lists_wrong_access_key_is_fatal(sim: Simulator) -> None:
    client = make_client(cx(sim.url, profile="call-lists", access_key_secret=Secret("nope")))
    try:
        with pytest.raises(AuthError):
            await client.submit(batch())
    finally:
        await client.close()
