"""DncGroupPusher: batching, retries for as long as it takes, fatal errors surface."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from connector.cxone.exceptions import ClientError, RetriesExhaustedError, ServerError
from connector.retractions import DncGroupPusher


def no_delays() -> itertools.repeat[float]:
    return itertools.repeat(0.0)


async def test_numbers_are_batched_and_acknowledged() -> None:
    calls: list[tuple[str, list[str]]] = []

    async def add(group: str, numbers: list[str]) -> None:
        calls.append((group, numbers))

    pusher = DncGroupPusher(add, "g1", delays=no_delays, max_batch=3, linger_s=0.01)
    await pusher.start()
    futures = [pusher.push(f"+1415555010{i}") for i in range(5)]
    await asyncio.wait_for(asyncio.gather(*futures), 2)
    await pusher.close()
    assert [len(n) for _, n in calls] == [3, 2]
    assert {g for g, _ in calls} == {"g1"}
    assert sorted(n for _, ns in calls for n in ns) == sorted(f"+1415555010{i}" for i in range(5))
    assert pusher.pushed == 5


async def test_retriable_failures_are_retried_until_they_succeed() -> None:
    attempts = 0

    async def add(group: str, numbers: list[str]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ServerError(503, "busy")
        if attempts == 2:
            raise RetriesExhaustedError(8, ServerError(502, "still busy"))

    pusher = DncGroupPusher(add, "g1", delays=no_delays, linger_s=0.0)
    await pusher.start()
    await asyncio.wait_for(pusher.push("+14155550100"), 2)
    await pusher.close()
    assert attempts == 3


async def test_a_fatal_answer_fails_the_numbers() -> None:
    async def add(group: str, numbers: list[str]) -> None:
        raise ClientError(404, '{"error":"no such group"}')

    pusher = DncGroupPusher(add, "missing", delays=no_delays, linger_s=0.0)
    await pusher.start()
    with pytest.raises(ClientError):
        await asyncio.wait_for(pusher.push("+14155550100"), 2)
    await pusher.close()


async def test_close_cancels_what_was_not_acknowledged() -> None:
    release = asyncio.Event()

    async def add(group: str, numbers: list[str]) -> None:
        await release.wait()

    pusher = DncGroupPusher(add, "g1", delays=no_delays, linger_s=0.0)
    await pusher.start()
    fut = pusher.push("+14155550100")
    await asyncio.sleep(0.05)
    later = pusher.push("+14155550101")
    await pusher.close()
    assert later.cancelled()
    assert fut.cancelled()


def test_push_before_start_is_an_error() -> None:
    async def add(group: str, numbers: list[str]) -> None:
        return None

    with pytest.raises(RuntimeError):
        DncGroupPusher(add, "g1", delays=no_delays).push("+14155550100")
