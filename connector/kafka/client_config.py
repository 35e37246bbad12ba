"""librdkafka configuration dictionaries built from :class:`connector.config.Settings`.

Order of precedence, lowest first: our defaults, ``kafka_common``, then ``kafka_consumer``
or ``kafka_producer``, and last the few settings correctness depends on (manual commits,
idempotence), which a pass-through table cannot switch off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from connector.config import Settings

#: Where librdkafka's own log lines go (its ``logger`` setting): through the connector's
#: logging, so they are levelled, masked, and JSON when ``logging.json`` is on, instead of raw
#: ``%3|...|FAIL|...`` lines on stderr beside the connector's.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")


def with_logger(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with librdkafka's log lines routed to :data:`LIBRDKAFKA_LOGGER` (served by the
    client's own poll or consume calls, on the thread that owns the client)."""
    return {**config, "logger": LIBRDKAFKA_LOGGER}


def _base(settings: Settings) -> dict[str, str]:
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "client.id": settings.kafka.client_id,
        **settings.kafka_common,
    }


def consumer_config(settings: Settings) -> dict[str, str]:
    """The group consumer of ``crm.contacts.optin``: manual commits, cooperative-sticky."""
    cfg = _base(settings)
    cfg.update({
        "group.id": settings.kafka.group_id,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
    })
    cfg.update(settings.kafka_consumer)
    # Offsets are committed only once settled (connector.core.offsets); never by librdkafka.
    cfg["enable.auto.commit"] = "false"
    cfg["enable.auto.offset.store"] = "false"
    return cfg


def dnc_consumer_config(settings: Settings) -> dict[str, str]:
    """The DNC materialiser: assigned partitions, no group membership, never commits.

    ``group.id`` is still required by librdkafka's consumer; it is never joined because the
    partitions are assigned directly.
    """
    cfg = _base(settings)
    cfg.update(settings.kafka_consumer)
    cfg["group.id"] = f"{settings.kafka.group_id}.dnc-materialiser"
    cfg["enable.auto.commit"] = "false"
    cfg["enable.auto.offset.store"] = "false"
    return cfg


def producer_config(settings: Settings) -> dict[str, str]:
    """The shared producer: idempotent (acks=all, ordered retries), lz4, a short linger."""
    cfg = _base(settings)
    # Room for an audit record and a DNC entry per unsettled record, plus delivery's own:
    # the tracker bounds what can be in flight, so the local queue never refuses one.
    queue_size = max(500_000, 2 * settings.kafka.max_unsettled + 100_000)
    cfg.update({"compression.type": "lz4", "linger.ms": "5", "queue.buffering.max.messages": str(queue_size)})
    cfg.update(settings.kafka_producer)
    cfg["enable.idempotence"] = "true"
    return cfg
