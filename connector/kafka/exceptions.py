"""Errors raised by the Kafka edges (consumer thread, producer, DNC source).

    ConnectorError
    └── KafkaError                 anything the Kafka client reported
        ├── ProduceError           a record was not acknowledged by the broker
        ├── CommitError            an offset commit failed
        ├── ConsumeError           the consumer reported a fatal error or is closed
        └── DncBootstrapError      the DNC table could not be (or was not yet) materialised

``retriable`` comes from librdkafka's own classification where there is one
(:func:`from_kafka_error`).
"""

from __future__ import annotations

from typing import Any

from connector.errors import ConnectorError


class KafkaError(ConnectorError):
    """The Kafka client reported an error.

    Attributes:
        code: librdkafka's error name (for example ``_MSG_TIMED_OUT``), or ``""``.
        fatal: True when the client instance can no longer be used.
    """

    def __init__(self, message: str, *, retriable: bool | None = None, code: str = "",
                 fatal: bool = False) -> None:
        super().__init__(message, retriable=retriable)
        self.code = code
        self.fatal = fatal


class ProduceError(KafkaError):
    """A record was not acknowledged by the broker (or could not be queued)."""


class CommitError(KafkaError):
    """An offset commit failed."""


class ConsumeError(KafkaError):
    """The consumer failed fatally, or was used after it was closed."""


class DncBootstrapError(KafkaError):
    """The DNC table could not be materialised, or not within the deadline."""


#: Errors after which the same call may well succeed a moment later, although librdkafka
#: does not flag them retriable: local ones (it already gave up retrying) and a partition
#: leader not known yet (a topic created a moment ago, a leader moving).
APP_RETRIABLE = frozenset({
    "_MSG_TIMED_OUT", "_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN", "_QUEUE_FULL", "_WAIT_COORD",
    "NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "REQUEST_TIMED_OUT",
})


def is_retriable(err: Any) -> bool:
    """Whether a ``confluent_kafka.KafkaError`` is worth retrying (librdkafka's flag or
    :data:`APP_RETRIABLE`, never a fatal error)."""
    return (bool(err.retriable()) or str(err.name()) in APP_RETRIABLE) and not err.fatal()


def from_kafka_error(cls: type[KafkaError], err: Any, context: str) -> KafkaError:
    """Wrap a ``confluent_kafka.KafkaError`` into one of ours.

    Args:
        cls: which of our classes to build.
        err: the confluent-kafka error (anything with ``name()``, ``str()``, ``retriable()``,
            ``fatal()``).
        context: what was being done, prefixed to the message.

    Returns:
        An instance of ``cls`` whose ``retriable`` and ``fatal`` mirror librdkafka's (plus
        :data:`APP_RETRIABLE`). Fatal errors are never retriable on the same client.
    """
    fatal = bool(err.fatal())
    retriable = is_retriable(err)
    return cls(f"{context}: {err.name()}: {err.str()}", retriable=retriable, code=str(err.name()),
               fatal=fatal)
