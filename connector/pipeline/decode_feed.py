"""Consumed lists to decode lanes and back, in consume order (ingest stages 1-2, the I/O half).

A consumed list is split by record key over the decode lanes (worker processes), so every
record of a key meets the same worker and its phone cache; the lanes' answers are put back in
**consume order** before the ingest core sees them (the key need not be the contact id, and
one contact's records may be in different lanes). A list whose records the Schema Registry
could not be asked about yet is decoded again, with backoff, before anything behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from connector.core.ingest import Consumed, Effects, IngestCore
from connector.core.models import TP, SourceRef
from connector.cxone.backoff import backoff
from connector.kafka.consumer import ConsumerThread
from connector.kafka.dlq_headers import plain_headers
from connector.ops.metrics import Metrics
from connector.pipeline.decode_lanes import DecodePool
from connector.pipeline.decoding import STAGE_RETRY, Decoded
from connector.pipeline.effects import IngestStats

log = logging.getLogger(__name__)

_UNSEEN: Any = object()


#: Consumed lists in flight (fed, not yet windowed) per decode lane.
LISTS_PER_LANE = 4


class DecodeFeed:
    """The feeder and the processor: consumed lists to the lanes, answers to the core.

    Args:
        consumer: where consumed lists come from (its thread hands them over).
        core: tracks each list's offsets when fed, and windows its records when decoded.
        pool: the decode lanes.
        apply: carries out the effects of :meth:`IngestCore.receive`.
        flow: re-evaluates flow control after each list.
        metrics: ``events_consumed`` and ``decode_retries``.
        stats: the consumed counter tests and benchmarks read.
        poll_s: how long one wait for a consumed list lasts.
    """

    def __init__(self, consumer: ConsumerThread, core: IngestCore, pool: DecodePool, *,
                 apply: Callable[[Effects], None], flow: Callable[[], None], metrics: Metrics,
                 stats: IngestStats, poll_s: float) -> None:
        self._consumer = consumer
        self._core = core
        self._pool = pool
        self._apply = apply
        self._flow = flow
        self._metrics = metrics
        self._stats = stats
        self._poll_s = poll_s
        #: Cleared while the consumer is paused: lists already handed over wait too.
        self.flowing = asyncio.Event()
        self.flowing.set()
        # Lists fed, in feed order; a slot is taken before a list is fetched, so feeding never
        # waits (nor can a cancelled feeder lose a tracked list).
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue()
        self._slots = asyncio.Semaphore(LISTS_PER_LANE * pool.lanes)
        self._processing = 0
        #: True while decoding waits for the Schema Registry.
        self.registry_unavailable = False

    @property
    def in_flight(self) -> int:
        """Consumed lists fed to the lanes and not yet windowed."""
        return self._queue.qsize() + self._processing

    async def consume_loop(self) -> None:
        """Feed consumed lists to the lanes, in consume order (the feeder)."""
        while True:
            await self.flowing.wait()
            async with contextlib.AsyncExitStack() as slot:
                await self._slots.acquire()  # waits while the processor is behind
                slot.callback(self._slots.release)
                messages = await self._consumer.get_batch(timeout=self._poll_s)
                if not messages:
                    continue
                self._stats.consumed += len(messages)
                self._metrics.events_consumed.inc(len(messages))
                chunk = feed(messages, self._core, self._pool)
                self._flow()  # records count as unsettled from here on
                if not chunk.parts:
                    continue
                self._queue.put_nowait(chunk)
                slot.pop_all()  # the processor releases it

    async def process_loop(self) -> None:
        """Take the decoded lists in feed order and window them (the processor)."""
        while True:
            chunk = await self._queue.get()
            self._processing = 1
            try:
                records = await decoded_in_order(chunk, self._pool, on_retry=self._registry_retry)
                # synchronous from here: no rebalance interleaves with a list
                self._apply(self._core.receive(chunk.generation, records))
            finally:
                self._processing = 0
                self._slots.release()
            self._flow()

    def _registry_retry(self, waiting: bool) -> None:
        self.registry_unavailable = waiting
        if waiting:
            self._metrics.decode_retries.inc()


def feed(messages: list[Message], core: IngestCore, pool: DecodePool) -> Chunk:
    """Track each record of an assigned partition in ``core`` and send it to its key's lane.

    Returns:
        The list in the decode pool (its records of revoked partitions left out).
    """
    lanes = pool.lanes
    parts = [_Part() for _ in range(lanes)]
    runs: dict[TP, Any] = {}  # per partition: offsets to track, or None when not assigned
    count = 0
    for msg in messages:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        tp: TP = (topic, partition)  # type: ignore[assignment]  # a consumed message has both
        run = runs.get(tp, _UNSEEN)
        if run is _UNSEEN:
            run = runs[tp] = [] if core.is_assigned(tp) else None
        if run is None or offset is None:
            continue  # revoked while it waited in the hand-off queue
        run.append(offset)
        # By key, not by partition: librdkafka hands over long runs of one partition, which
        # would keep one lane busy. A key's records meet one worker (and its phone cache).
        key = msg.key()
        part = parts[hash(key) % lanes] if lanes > 1 and key else parts[0]
        part.messages.append(msg)
        part.refs.append(SourceRef(topic, partition, offset))  # type: ignore[arg-type]
        part.records.append((key, msg.value()))
        part.indices.append(count)
        count += 1
    for tp, run in runs.items():
        if run:
            core.track(tp, run)
    used = [(index, part) for index, part in enumerate(parts) if part.messages]
    return Chunk(core.generation, [part for _, part in used], [index for index, _ in used],
                 [pool.submit(index, part.records) for index, part in used], count)


async def decoded_in_order(chunk: Chunk, pool: DecodePool, *, on_retry: Callable[[bool], None]) -> list[Consumed]:
    """The list's records with their decoders' answers, in consume order.

    A part holding a record the Schema Registry could not be asked about is decoded again with
    backoff until it can (``on_retry(True)`` at each retry, ``on_retry(False)`` once through):
    the list waits, and nothing behind it overtakes it.

    Raises:
        connector.pipeline.decode_lanes.DecodeWorkerError: a worker died or failed.
    """
    results = [await fut for fut in chunk.decoded]
    delays: Iterator[float] | None = None
    while any(out[0] == STAGE_RETRY for decoded in results for out in decoded):
        if delays is None:
            delays = backoff(0.5, 30.0)
            log.warning("the schema registry cannot be reached; decoding pauses and retries")
        on_retry(True)
        await asyncio.sleep(next(delays))
        for i, (lane, part) in enumerate(zip(chunk.lanes, chunk.parts, strict=True)):
            if any(out[0] == STAGE_RETRY for out in results[i]):
                results[i] = await pool.submit(lane, part.records)
    if delays is not None:
        log.info("the schema registry answers again; decoding resumes")
    on_retry(False)
    return _in_consume_order(chunk, results)


def _in_consume_order(chunk: Chunk, results: list[list[Decoded]]) -> list[Consumed]:
    """The list's records with their answers, back in consume order."""
    if len(chunk.parts) == 1:  # one lane: already in order
        part = chunk.parts[0]
        return [Consumed(ref, msg.key(), msg.value(), _headers(msg), msg.timestamp()[1], out)
                for msg, ref, out in zip(part.messages, part.refs, results[0], strict=True)]
    ordered: list[Any] = [None] * chunk.size
    for part, decoded in zip(chunk.parts, results, strict=True):
        for msg, ref, index, out in zip(part.messages, part.refs, part.indices, decoded, strict=True):
            ordered[index] = Consumed(ref, msg.key(), msg.value(), _headers(msg), msg.timestamp()[1], out)
    return ordered


def _headers(msg: Message) -> list[tuple[str, bytes]]:
    headers = msg.headers()
    return plain_headers(headers) if headers else []


class _Part:
    """The records of one consumed list sent to one decode lane."""

    __slots__ = ("indices", "messages", "records", "refs")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refs: list[SourceRef] = []
        self.records: list[tuple[bytes | None, bytes | None]] = []
        self.indices: list[int] = []  # each record's place in the consumed list


@dataclass(slots=True)
class Chunk:
    """One consumed list in the decode pool, per lane, in feed order."""

    generation: int
    parts: list[_Part]
    lanes: list[int]
    decoded: list[asyncio.Future[list[Decoded]]]
    size: int
