"""A worker thread that reports to an asyncio loop: the lifecycle the Kafka readers share.

A reader that owns a confluent-kafka client runs its blocking loop on a daemon thread and
hands results to the event loop with ``call_soon_threadsafe`` (a loop that closed meanwhile
is ignored). :class:`LoopThread` holds that plumbing: ``start`` on the loop, a ``ready``
signal set on the loop, ``done`` resolved when the thread's target returns, ``wait_ready``
and ``close`` with deadlines, and the ``stop`` event the target watches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def call_loop(loop: asyncio.AbstractEventLoop | None, callback: Callable[..., Any], *args: Any) -> None:
    """Schedule ``callback(*args)`` on ``loop`` from another thread; nothing when the loop is
    missing or closed."""
    if loop is None or loop.is_closed():
        return
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop closed meanwhile
        pass


class LoopThread:
    """One daemon thread running ``target``, observed from an asyncio loop.

    Args:
        name: the thread's name.
        target: the thread's body; it should return soon after :attr:`stop` is set.
    """

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.name = name
        self._target = target
        #: Set to ask the target to return.
        self.stop = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready: asyncio.Event | None = None
        self._done: asyncio.Future[None] | None = None

    @property
    def started(self) -> bool:
        """:meth:`start` was called."""
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (on the event loop, which it reports to). A second call does nothing."""
        if self._thread is not None:
            return
        self.loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._done = self.loop.create_future()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def call(self, callback: Callable[..., Any], *args: Any) -> None:
        """From the thread: run ``callback(*args)`` on the loop."""
        call_loop(self.loop, callback, *args)

    def set_ready(self) -> None:
        """On the loop: mark the reader ready (wakes :meth:`wait_ready`)."""
        if self._ready is not None:
            self._ready.set()

    def _run(self) -> None:
        try:
            self._target()
        finally:
            self.call(self._finish)

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def wait_ready(self, timeout: float | None) -> bool:
        """Wait until :meth:`set_ready` was called or the thread ended, at most ``timeout``.

        Returns:
            True when ready; False when the thread ended or the time ran out first (or it was
            never started).
        """
        if self._ready is None or self._done is None:
            return False
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({waiter, self._done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        return self._ready.is_set()

    async def close(self, timeout: float) -> bool:
        """Set :attr:`stop` and wait for the thread to end, at most ``timeout``.

        Returns:
            True when it ended (or was never started); False when it is still running.
        """
        if self._done is None:
            return True
        self.stop.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._done)
        except TimeoutError:
            log.error("thread %s still running after %.1fs", self.name, timeout)
            return False
        return True
