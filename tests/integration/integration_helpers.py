"""Helpers shared by several integration test modules (imported by name: pytest puts this
folder on ``sys.path``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer

from connector.core.models import Batch, ContactEvent, SourceRef, batch_id_for


def consume_n(bootstrap: str, topic: str, n: int, timeout: float = 30.0, *, catch_extra: bool = False) -> list[Any]:
    """Read ``n`` records of ``topic`` from the start with a fresh group (fewer on timeout).

    With ``catch_extra``, wait a moment more and return whatever arrives beyond ``n`` too, so
    a test can assert that nothing was written twice.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": "false"})
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=max(1, n - len(out)), timeout=0.5):
                assert msg.error() is None, msg.error()
                out.append(msg)
        if catch_extra:
            out.extend(m for m in consumer.consume(num_messages=10, timeout=0.5) if m.error() is None)
    finally:
        consumer.close()
    return out


def simple_batch(first: int, count: int) -> Batch:
    """A batch of ``count`` minimal contacts ``c<first>..``, numbers ``+1415555<i>``."""
    contacts = [
        ContactEvent.of(SourceRef("crm", 0, i), None, b"", [], 0, f"e{i}", f"c{i}", f"+1415555{i:04d}", True,
                        "Ann", None, None, {}, 1_700_000_000_000, "crm")
        for i in range(first, first + count)
    ]
    covered = [c.source for c in contacts]
    return Batch(batch_id_for(covered), contacts, covered, "size", time.monotonic())
