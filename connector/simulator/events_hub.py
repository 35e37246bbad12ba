"""Fan-out of job events to the open event sockets, each with its subscribed job ids."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from connector.simulator.state import JobEvent


@dataclass(eq=False)
class Subscriber:
    """One event socket: the job ids it follows and the frames waiting to be sent."""

    job_ids: set[str] = field(default_factory=set)
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class EventHub:
    """Delivers each job event to the sockets subscribed to its job."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()

    def subscribe(self) -> Subscriber:
        """Register a new socket (following no job yet)."""
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a socket that closed."""
        self.subscribers.discard(sub)

    def publish(self, events: Iterable[JobEvent]) -> None:
        """Queue every event for the sockets following its job."""
        for event in events:
            frame: dict[str, Any] | None = None
            for sub in self.subscribers:
                if event.job_id in sub.job_ids:
                    frame = frame or event.to_json()
                    sub.queue.put_nowait(frame)
