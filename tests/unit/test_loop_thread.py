"""connector.kafka.loop_thread: a worker thread observed from the event loop."""

from __future__ import annotations

import asyncio

from connector.kafka.loop_thread import LoopThread, call_loop


async def test_ready_done_and_close() -> None:
    seen: list[str] = []

    def body() -> None:
        worker.call(seen.append, "from the thread")
        worker.call(worker.set_ready)
        worker.stop.wait(30)

    worker = LoopThread("t-ready", body)
    assert not await worker.wait_ready(0)  # not started
    worker.start()
    assert await worker.wait_ready(30)
    assert seen == ["from the thread"]
    assert await worker.close(30)


async def test_a_thread_that_ends_unready_is_reported_as_not_ready() -> None:
    worker = LoopThread("t-ends", lambda: None)
    worker.start()
    assert not await worker.wait_ready(30)  # returns when the thread ended, not at the deadline
    assert await worker.close(30)


async def test_close_reports_a_thread_that_does_not_stop() -> None:
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    worker = LoopThread("t-stuck", lambda: asyncio.run_coroutine_threadsafe(release.wait(), loop).result(30))
    worker.start()
    assert not await worker.close(0.05)
    release.set()
    assert await worker.close(30)


def test_call_loop_ignores_a_closed_loop() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    call_loop(loop, print, "never")  # no error
    call_loop(None, print, "never")
