"""Broker helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

#: Group-coordinator errors of a broker that is still settling (a fresh one loads
#: ``__consumer_offsets`` first): asked again rather than failed.
_SETTLING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
             KafkaError.COORDINATOR_NOT_AVAILABLE}


def committed_offsets(bootstrap: str, group: str, tps: Sequence[tuple[str, int]],
                      timeout: float = 20.0) -> dict[tuple[str, int], int]:
    """The group's committed offsets of ``tps`` (-1001 where none).

    Raises:
        KafkaException: a non-retriable error, or the coordinator did not settle in ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            result = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
            return {(tp.topic, tp.partition): tp.offset for tp in result}
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            settling = err is not None and (err.code() in _SETTLING or err.retriable())
            if not settling or time.monotonic() >= deadline:
                raise
        finally:
            consumer.close()
        time.sleep(0.2)
