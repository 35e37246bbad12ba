"""Client-side pacing against the in-process simulator's token-bucket rate limit (real sockets).

Four workers submit batches concurrently through one v2 client, as delivery does with
``cxone.max_in_flight = 4``; only the bulk-insert path is limited (burst 1).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from integration_helpers import simple_batch

from connector.config import CXoneSettings, Secret
from connector.core.models import Batch
from connector.cxone.client import Retrying
from connector.cxone.v2 import V2Client
from connector.simulator import RateLimitFaults, Simulator, SimulatorConfig

pytestmark = pytest.mark.timeout(30)

BULK_PATH = "/api/v2/outbound/contactlistitems/bulkinsert"
LIST = CXoneSettings().contact_list_id


def batch(first: int, n: int = 2) -> Batch:
    return simple_batch(first, n)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator(SimulatorConfig())
    await s.start(host="127.0.0.1", port=0)
    yield s
    await s.stop()


async def get(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        resp.raise_for_status()
        body: dict[str, object] = await resp.json()
        return body


async def deliver_all(sim: Simulator, rps: float, retry_after: bool, client_rps: float,
                      count: int) -> tuple[Retrying, dict[str, int], set[str]]:
    """Submit ``count`` batches with 4 workers; the bulk-insert counts by status and the list's phones."""
    sim.configure_faults(paths=(BULK_PATH,), rate_limit=RateLimitFaults(
        enabled=True, requests_per_second=rps, burst=1, retry_after=retry_after))
    settings = CXoneSettings(base_url=sim.url, client_secret=Secret("connector-secret"), request_timeout_s=5.0,
                             max_request_attempts=30, backoff_initial_s=0.05, backoff_max_s=1.0,
                             max_requests_per_second=client_rps)
    retrying = Retrying(settings)
    client = V2Client(settings, retrying)
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            await client.submit(batch(queue.pop(0) * 2))

    try:
        async with asyncio.timeout(25):
            await asyncio.gather(*(worker() for _ in range(4)))
    finally:
        await client.close()
    by_endpoint = (await get(sim.url + "/_sim/requests"))["byEndpoint"]
    assert isinstance(by_endpoint, dict)
    counts: dict[str, int] = by_endpoint.get("POST " + BULK_PATH, {})
    return retrying, counts, await landed(sim, expected_phones(count))


async def landed(sim: Simulator, want: set[str]) -> set[str]:
    """The list's phones once ``want`` landed (jobs run after the 202), or after 5 s."""
    deadline = time.monotonic() + 5.0
    while True:
        contacts = (await get(f"{sim.url}/_sim/lists/{LIST}/contacts"))["contacts"]
        assert isinstance(contacts, list)
        phones = {c["phoneNumber"] for c in contacts}
        if phones >= want or time.monotonic() > deadline:
            return phones
        await asyncio.sleep(0.05)


def expected_phones(count: int) -> set[str]:
    return {c.phone_e164 for i in range(count) for c in batch(i * 2).contacts}


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
async def test_configured_rate_keeps_429s_below_5_percent(sim: Simulator, retry_after: bool) -> None:
    # The server allows 12 per second; the client is told 8 (a margin, as docs/operations.md advises).
    _, counts, phones = await deliver_all(sim, 12.0, retry_after, 8.0, count=32)
    assert phones == expected_phones(32)  # everything delivered
    assert counts.get("202") == 32
    assert counts.get("429", 0) / sum(counts.values()) < 0.05


async def test_aimd_alone_converges_below_an_unknown_limit(sim: Simulator) -> None:
    # No configured rate: the first 429s (four workers start at once against burst 1) close the
    # gate and halve the pace measured so far; the rest of the run stays under the limit.
    retrying, counts, phones = await deliver_all(sim, 40.0, False, 0.0, count=24)
    assert phones == expected_phones(24)
    assert counts.get("202") == 24
    pacer = retrying.gate.pacer
    assert pacer.episodes >= 1 and not math.isinf(pacer.rate)
    # Without pacing the four workers race for every token (most answers would be 429s).
    assert counts.get("429", 0) / sum(counts.values()) < 0.2
