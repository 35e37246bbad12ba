"""The bounded hand-off of consumed message lists from the consumer thread to the event loop.

The consumer thread counts a list as pending when it schedules it onto the loop (with
``call_soon_threadsafe``); the loop uncounts it when it takes it. The count is what the
thread's :class:`connector.core.pausing.PausingManager` holds and pauses on, so it is kept
under a lock: both sides write it. A ``None`` in the queue is the end marker, put once the
consumer closed; it stays in the queue for any other reader.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

from confluent_kafka import Message

from connector.core.models import TP


class HandOff:
    """The queue between the consumer thread and the loop, with its pending count."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[list[Message] | None] = asyncio.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self._taken = threading.Event()  # set whenever the loop takes a list

    @property
    def pending(self) -> int:
        """Lists scheduled by the thread and not yet taken by the loop."""
        with self._lock:
            return self._pending

    def qsize(self) -> int:
        """Lists (and the end marker) already in the loop's queue."""
        return self._queue.qsize()

    # thread side

    def counted(self) -> None:
        """Count one list the thread is about to schedule onto the loop."""
        with self._lock:
            self._pending += 1

    def wait_taken(self, timeout: float) -> None:
        """Block the thread until the loop takes a list, or ``timeout`` seconds."""
        self._taken.clear()
        self._taken.wait(timeout)

    # loop side

    def deliver(self, batch: list[Message]) -> None:
        """Put a counted list into the queue (runs on the loop)."""
        self._queue.put_nowait(batch)

    def end(self) -> None:
        """Put the end marker (runs on the loop)."""
        self._queue.put_nowait(None)

    async def get(self, timeout: float | None) -> list[Message] | None:
        """The next list; ``[]`` when ``timeout`` expired first, ``None`` at the end."""
        try:
            async with asyncio.timeout(timeout):
                batch = await self._queue.get()
        except TimeoutError:
            return []
        if batch is None:
            self._queue.put_nowait(None)  # keep the end marker for any other reader
            return None
        self._uncount()
        return batch

    def drop(self, tps: Iterable[TP]) -> int:
        """Remove the records of ``tps`` still waiting in the queue.

        Returns:
            How many records were dropped.
        """
        drop = set(tps)
        kept: list[list[Message] | None] = []
        dropped = 0
        while not self._queue.empty():
            batch = self._queue.get_nowait()
            if batch is None:
                kept.append(None)
                continue
            remaining = [m for m in batch if (m.topic(), m.partition()) not in drop]
            dropped += len(batch) - len(remaining)
            if remaining:
                kept.append(remaining)
            else:
                self._uncount()
        for item in kept:
            self._queue.put_nowait(item)
        return dropped

    def _uncount(self) -> None:
        with self._lock:
            self._pending -= 1
        self._taken.set()
