"""DncGroupPusher: ordered add/remove batches, retries for as long as it takes, fatal errors surface."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from connector.cxone.exceptions import ClientError, RetriesExhaustedError, ServerError
from connector.pipeline.dnc_group import DncGroupPusher


def no_delays() -> itertools.repeat[float]:
    return itertools.repeat(0.0)


class Recorder:
    """Records the calls made to the CXone client functions, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []

    async def add(self, group: str, numbers: list[str]) -> None:
        self.calls.append(("add", group, numbers))

    async def remove(self, group: str, numbers: list[str]) -> None:
        self.calls.append(("remove", group, numbers))


async def test_numbers_are_batched_and_acknowledged() -> None:
    rec = Recorder()
    pusher = DncGroupPusher(rec.add, rec.remove, "g1", delays=no_delays, max_batch=3, linger_s=0.01)
    await pusher.start()
    futures = [pusher.push(f"+1415555010{i}") for i in range(5)]
    await asyncio.wait_for(asyncio.gather(*futures), 2)
    await pusher.close()
    assert [(kind, len(n)) for kind, _, n in rec.calls] == [("add", 3), ("add", 2)]
    assert {g for _, g, _ in rec.calls} == {"g1"}
    assert sorted(n for _, _, ns in rec.calls for n in ns) == sorted(f"+1415555010{i}" for i in range(5))
    assert pusher.done["add"] == 5


async def test_release_removes_only_what_this_instance_added_in_order() -> None:
    rec = Recorder()
    pusher = DncGroupPusher(rec.add, rec.remove, "g1", delays=no_delays, linger_s=0.01)
    await pusher.start()
    added = pusher.push("+14155550100")
    assert pusher.release(["+14155550100", "+14155550199"]) == 1  # never added: nothing to release
    assert pusher.release(["+14155550100"]) == 0  # released once already
    await asyncio.wait_for(added, 2)
    for _ in range(100):
        if pusher.done["remove"]:
            break
        await asyncio.sleep(0.01)
    await pusher.close()
    assert rec.calls == [("add", "g1", ["+14155550100"]), ("remove", "g1", ["+14155550100"])]


async def test_retriable_failures_are_retried_until_they_succeed() -> None:
    attempts = 0

    async def add(group: str, numbers: list[str]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ServerError(503, "busy")
        if attempts == 2:
            raise RetriesExhaustedError(8, ServerError(502, "still busy"))

    pusher = DncGroupPusher(add, Recorder().remove, "g1", delays=no_delays, linger_s=0.0)
    await pusher.start()
    await asyncio.wait_for(pusher.push("+14155550100"), 2)
    await pusher.close()
    assert attempts == 3


async def test_a_fatal_answer_fails_the_numbers() -> None:
    async def add(group: str, numbers: list[str]) -> None:
        raise ClientError(404, '{"error":"no such group"}')

    pusher = DncGroupPusher(add, Recorder().remove, "missing", delays=no_delays, linger_s=0.0)
    await pusher.start()
    with pytest.raises(ClientError):
        await asyncio.wait_for(pusher.push("+14155550100"), 2)
    await pusher.close()


async def test_close_cancels_what_was_not_acknowledged() -> None:
    release = asyncio.Event()

    async def add(group: str, numbers: list[str]) -> None:
        await release.wait()

    pusher = DncGroupPusher(add, Recorder().remove, "g1", delays=no_delays, linger_s=0.0)
    await pusher.start()
    fut = pusher.push("+14155550100")
    await asyncio.sleep(0.05)
    later = pusher.push("+14155550101")
    await pusher.close()
    assert later.cancelled()
    assert fut.cancelled()


def test_push_before_start_is_an_error() -> None:
    rec = Recorder()
    with pytest.raises(RuntimeError):
        DncGroupPusher(rec.add, rec.remove, "g1", delays=no_delays).push("+14155550100")
