"""connector.pipeline.gate: the send gate is the conjunction of its checks, and fails closed."""

from __future__ import annotations

import asyncio

from connector.pipeline.gate import SendGate, always_open


async def test_the_first_failing_check_names_the_reason_and_a_raising_check_closes_it() -> None:
    state = {"dnc": False}

    def dnc() -> tuple[bool, str]:
        return state["dnc"], "the DNC table is not current"

    def broken() -> tuple[bool, str]:
        raise RuntimeError("a bug")

    gate = SendGate([always_open, dnc])
    assert gate.status() == (False, "the DNC table is not current")
    state["dnc"] = True
    assert gate.status() == (True, "open")
    gate.add(broken)
    assert gate.status() == (False, "send check failed: RuntimeError")


async def test_wait_open_returns_only_once_every_check_passes() -> None:
    state = {"fresh": False}
    gate = SendGate([lambda: (state["fresh"], "list national is 31 days old")], poll_s=0.01)
    waiter = asyncio.ensure_future(gate.wait_open())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    state["fresh"] = True
    async with asyncio.timeout(2):
        await waiter
