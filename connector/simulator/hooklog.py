"""What the webhook receiver remembers, free of I/O: deliveries per name, and failures due."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class WebhookDelivery:
    """One request received by the webhook receiver."""

    delivery_id: int
    received_at: float
    method: str
    headers: dict[str, str]
    body: str
    answered_status: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.delivery_id, "receivedAt": _iso(self.received_at), "method": self.method,
                "headers": self.headers, "body": self.body, "answeredStatus": self.answered_status}


class WebhookLog:
    """Deliveries per webhook name (the newest ``history`` of each), and failures still due.

    Args:
        clock: epoch seconds now.
        history: deliveries kept per name (oldest dropped first).
    """

    def __init__(self, clock: Callable[[], float], history: int) -> None:
        self._clock = clock
        self.history = history
        self.deliveries: dict[str, deque[WebhookDelivery]] = {}
        self._failures: dict[str, tuple[int, int]] = {}
        self._ids = itertools.count(1)

    def fail(self, name: str, count: int, status: int = 500) -> None:
        """Answer the next ``count`` deliveries to ``name`` with ``status``."""
        self._failures[name] = (count, status)

    def receive(self, name: str, method: str, headers: Mapping[str, str], body: str) -> int:
        """Record a delivery; returns the status to answer (200, or a failure still due)."""
        remaining, status = self._failures.get(name, (0, 500))
        answer = 200
        if remaining > 0:
            answer = status
            self._failures[name] = (remaining - 1, status)
        kept = self.deliveries.setdefault(name, deque(maxlen=self.history))
        kept.append(WebhookDelivery(next(self._ids), self._clock(), method, dict(headers), body, answer))
        return answer
