"""connector.ops.supervisor: restart with backoff, or stop the app; never a silent death."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from connector.ops.supervisor import Supervisor, TaskFailedError


def instant() -> itertools.repeat[float]:
    return itertools.repeat(0.0)


async def test_a_restarting_task_comes_back_after_a_failure_and_counts_it() -> None:
    restarts: list[str] = []
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("boom")
        done.set()
        await asyncio.Event().wait()

    sup = Supervisor(instant, on_restart=restarts.append)
    sup.spawn("cxone-monitor-poll", flaky)
    async with asyncio.timeout(5):
        await done.wait()
    assert runs == 3 and restarts == ["cxone-monitor-poll"] * 2 and sup.failure is None and sup.dead() is None
    await sup.close()


async def test_too_many_restarts_in_the_window_fail_the_supervisor() -> None:
    async def always() -> None:
        raise ValueError("broken for good")

    sup = Supervisor(instant, max_restarts=2, window_s=60)
    sup.spawn("dnc-group-pusher", always)
    with pytest.raises(TaskFailedError, match="dnc-group-pusher.*ValueError"):
        async with asyncio.timeout(5):
            await sup.wait()
    assert sup.dead() == "dnc-group-pusher"
    await sup.close()


async def test_a_stop_task_fails_at_once_and_a_watched_one_too() -> None:
    async def once() -> None:
        raise KeyError("x")

    sup = Supervisor(instant)
    sup.spawn("stage", once, policy="stop")
    with pytest.raises(TaskFailedError) as info:
        async with asyncio.timeout(5):
            await sup.wait()
    assert info.value.task == "stage" and isinstance(info.value.__cause__, KeyError)
    other = Supervisor(instant)
    other.watch("cxone-monitor-subscribe", once())
    with pytest.raises(TaskFailedError, match="cxone-monitor-subscribe"):
        async with asyncio.timeout(5):
            await other.wait()


async def test_cancellation_and_a_clean_return_are_not_failures() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def quick() -> None:
        return None

    sup = Supervisor(instant)
    sup.spawn("a", forever)
    sup.spawn("b", quick)
    task = sup.watch("c", forever())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    await sup.close()
    assert sup.failure is None and sup.dead() is None
    with pytest.raises(ValueError, match="already supervised"):
        sup.spawn("a", forever)
