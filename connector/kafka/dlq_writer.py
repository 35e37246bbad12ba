"""Writes rejected records to the dead-letter topic, byte for byte, with Connect headers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from connector.kafka.dlq_headers import build_dlq_headers
from connector.kafka.producer import AsyncProducer

log = logging.getLogger(__name__)


class DeadLetterWriter:
    """Sends a source record's original key, value and headers to the DLQ topic.

    Args:
        producer: a started :class:`AsyncProducer`.
        topic: the dead-letter topic (``crm.contacts.dlq``).
    """

    def __init__(self, producer: AsyncProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        #: Records sent, per stage (read by metrics later).
        self.counts: dict[str, int] = {}

    def send_nowait(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]] | None,
        topic: str,
        partition: int,
        offset: int,
        stage: str,
        error_class: str,
        message: str,
    ) -> asyncio.Future[None]:
        """Queue one dead letter; the future resolves when the broker acknowledged it.

        ``message`` must already be masked (no full phone number); it is masked again and
        truncated by :func:`connector.kafka.dlq_headers.build_dlq_headers`.

        Raises:
            connector.kafka.exceptions.ProduceError: the record cannot be queued, or an
                earlier delivery failed (latched by the producer).
        """
        out_headers = build_dlq_headers(
            headers, topic=topic, partition=partition, offset=offset,
            stage=stage, error_class=error_class, message=message,
        )
        fut = self.producer.produce_nowait(self.topic, value, key=key, headers=out_headers)
        self.counts[stage] = self.counts.get(stage, 0) + 1
        log.debug("dead letter from %s[%d]@%d stage=%s class=%s",
                  topic, partition, offset, stage, error_class)
        return fut
