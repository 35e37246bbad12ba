"""Reading a topic from its beginning up to the high watermarks taken at the start.

The rule every bootstrap of a compacted topic here follows (the DNC materialiser's too): the
high watermarks are taken once; a partition is caught up when the consumer's *position* has
reached its watermark, or librdkafka reported the partition's end there. Never "last offset
+ 1": a transactional producer leaves control records (commit markers) that are never
delivered, so the last record seen may sit below the watermark forever. A partition with
nothing between its low and high watermark is caught up at once.

:func:`start_up_marks` and :class:`CatchUp` are the pieces; :func:`read_to_end` puts them
together for a one-shot reader (``dnc sync`` scanning the DNC topic's keys), and
:class:`connector.kafka.dnc_refreshes.DncRefreshReader` uses them for its bootstrap before it
follows the refresh topic.

The consumer must be created with ``enable.partition.eof = true`` (:func:`scan_config`).
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from connector.kafka.exceptions import KafkaError, from_kafka_error, is_retriable

_PARTITION_EOF: int = getattr(RdKafkaError, "_PARTITION_EOF")  # noqa: B009


class TopicScanError(KafkaError):
    """A topic could not be read up to its start-up watermarks (missing, unreachable, stalled)."""


def scan_config(config: Mapping[str, str], group_id: str) -> dict[str, Any]:
    """``config`` for an assigned, never-committing reader that is told of partition ends.

    ``group.id`` is required by librdkafka's consumer; with assigned partitions it is never
    joined.
    """
    cfg: dict[str, Any] = dict(config)
    cfg.setdefault("group.id", group_id)
    cfg.update({"enable.auto.commit": "false", "enable.auto.offset.store": "false",
                "enable.partition.eof": "true"})
    return cfg


def _wrap(exc: KafkaException, context: str) -> TopicScanError:
    err = exc.args[0] if exc.args else None
    if isinstance(err, RdKafkaError):
        return typing.cast(TopicScanError, from_kafka_error(TopicScanError, err, context))
    return TopicScanError(f"{context}: {exc}", retriable=True)


def start_up_marks(consumer: Consumer, topic: str, timeout_s: float) -> dict[int, tuple[int, int]]:
    """Every partition of ``topic`` with its ``(low, high)`` watermarks.

    Retriable errors (a leader still being elected on a topic created a moment ago) are
    retried until ``timeout_s``.

    Raises:
        TopicScanError: the topic does not exist or has no partitions (retriable: it may be
            created), or the broker did not answer within ``timeout_s``.
    """
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise _wrap(exc, f"metadata of {topic}") from None
    topic_md = metadata.topics.get(topic)
    if topic_md is None or topic_md.error is not None or not topic_md.partitions:
        why = topic_md.error.str() if topic_md is not None and topic_md.error is not None else "no partitions"
        raise TopicScanError(f"topic {topic} is not available: {why}", retriable=True)
    deadline = time.monotonic() + timeout_s
    marks: dict[int, tuple[int, int]] = {}
    for partition in sorted(topic_md.partitions):
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=max(0.1, deadline - time.monotonic()))
                marks[partition] = (low, high)
                break
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if not (isinstance(err, RdKafkaError) and is_retriable(err)) or time.monotonic() >= deadline:
                    raise _wrap(exc, f"watermarks of {topic}[{partition}]") from None
                time.sleep(0.1)
    return marks


class CatchUp:
    """Which partitions are still below their start-up high watermark.

    Args:
        topic: the topic.
        marks: ``{partition: (low, high)}`` from :func:`start_up_marks`.
    """

    def __init__(self, topic: str, marks: Mapping[int, tuple[int, int]]) -> None:
        self.topic = topic
        self.high = {p: high for p, (_, high) in marks.items()}
        self.pending = {p for p, (low, high) in marks.items() if high > max(low, 0)}

    @property
    def done(self) -> bool:
        """Every partition reached its start-up watermark."""
        return not self.pending

    def update(self, consumer: Consumer, eof: Mapping[int, int]) -> bool:
        """Take the partition ends just reported and the consumer's positions into account.

        Returns:
            :attr:`done`.
        """
        for partition, offset in eof.items():
            if offset >= self.high.get(partition, 0):
                self.pending.discard(partition)
        if self.pending:
            for tp in consumer.position([TopicPartition(self.topic, p) for p in self.pending]):
                if tp.offset >= 0 and tp.offset >= self.high[tp.partition]:
                    self.pending.discard(tp.partition)
        return self.done


def split_batch(messages: Iterable[Message]) -> tuple[list[Message], dict[int, int], list[Any]]:
    """``(records, {partition: offset} of partition ends, other errors)`` of one batch.

    Raises:
        KafkaException: a fatal error was delivered.
    """
    good: list[Message] = []
    eof: dict[int, int] = {}
    errors: list[Any] = []
    for msg in messages:
        err = msg.error()
        if err is None:
            good.append(msg)
        elif err.code() == _PARTITION_EOF:
            eof[msg.partition() or 0] = msg.offset() or 0
        elif err.fatal():
            raise KafkaException(err)
        else:
            errors.append(err)
    return good, eof, errors


def assign_from_beginning(consumer: Consumer, topic: str, partitions: Iterable[int]) -> None:
    """Assign ``partitions`` of ``topic`` at their first offset."""
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])


def read_to_end(
    consumer: Consumer,
    topic: str,
    on_records: Callable[[list[Message]], None],
    *,
    batch_size: int = 10_000,
    metadata_timeout_s: float = 10.0,
    stall_timeout_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Read every partition of ``topic`` from its beginning to its start-up high watermark.

    Args:
        consumer: a consumer made with :func:`scan_config`; its assignment is replaced.
        topic: the topic.
        on_records: called with each non-empty list of records, in partition order.
        batch_size: ``num_messages`` of one ``consume()`` call.
        metadata_timeout_s: deadline for the topic's metadata and watermarks.
        stall_timeout_s: how long no record and no partition end may arrive before giving up.
        clock: monotonic clock.

    Returns:
        How many records were read.

    Raises:
        TopicScanError: the topic is not available, a fatal error was reported, or nothing
            arrived for ``stall_timeout_s`` (retriable) while partitions were still behind.
    """
    catch_up = CatchUp(topic, start_up_marks(consumer, topic, metadata_timeout_s))
    assign_from_beginning(consumer, topic, catch_up.high)
    count = 0
    last_progress = clock()
    last_error = ""
    try:
        while not catch_up.done:
            messages = consumer.consume(num_messages=batch_size, timeout=0.5)
            good, eof, errors = split_batch(messages)
            if errors:
                last_error = str(errors[-1].str())
            if good or eof:
                last_progress = clock()
            if good:
                count += len(good)
                on_records(good)
            if not catch_up.update(consumer, eof) and clock() - last_progress > stall_timeout_s:
                why = f" (last error: {last_error})" if last_error else ""
                raise TopicScanError(f"reading {topic}: nothing arrived for {stall_timeout_s:g}s with "
                                     f"{len(catch_up.pending)} partition(s) behind{why}", retriable=True)
    except KafkaException as exc:
        raise _wrap(exc, f"reading {topic}") from None
    return count
