"""An asyncio face on confluent-kafka's ``Producer``.

``await produce(...)`` resolves when the broker acknowledged the record. A dedicated poll
thread serves librdkafka's delivery callbacks; results are collected and handed to the
event loop in bunches with ``loop.call_soon_threadsafe`` (one wake-up per poll, not one per
record).

Retriable means wait and retry; fatal means stop:

- **A full local queue is backpressure.** A record librdkafka cannot queue yet
  (``BufferError``) waits in a local overflow queue, in order, and is handed over as room
  frees up; the caller's future simply resolves later. Every later record queues behind it,
  so order is kept. The records it settles stay unsettled meanwhile, which is what pauses
  the consumer (``kafka.max_unsettled``).
- **A retriable delivery failure is produced again** (librdkafka gave up, e.g. the broker
  was away longer than ``message.timeout.ms``): the future stays pending, and the retry is
  counted in ``cxone_connector_kafka_produce_retries_total``. A broker outage is therefore
  waited out, never a failure.
- **Anything else fails the record's future** and is *latched*, as quix-streams does: the
  first failure that no awaiting caller has seen is raised again by the next
  :meth:`AsyncProducer.produce`, :meth:`~AsyncProducer.produce_nowait` or
  :meth:`~AsyncProducer.flush`, so a fire-and-forget record that failed cannot go unnoticed.
  A fatal error (the idempotent producer lost its guarantees) stays latched for good: the
  instance must be replaced.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Producer

from connector.kafka.client_config import LIBRDKAFKA_LOGGER
from connector.kafka.exceptions import KafkaError, ProduceError, from_kafka_error, is_retriable
from connector.ops.metrics import OTHER, Metrics

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
#: ``(topic, value, key)`` of one record in :meth:`AsyncProducer.produce_many_nowait`.
Record = tuple[str, bytes | None, bytes | None]

# How long the overflow queue waits before handing records over again when librdkafka's
# local queue is full.
_QUEUE_FULL_BACKOFF_S = 0.01


class AsyncProducer:
    """Idempotent producer usable from asyncio.

    Args:
        config: librdkafka settings (see :func:`connector.kafka.client_config.producer_config`).
            Idempotence is forced on.
        poll_interval_s: how long one poll of the delivery thread blocks.
        metrics: counts failed records in ``produce_errors`` (a private registry when ``None``).
        topic_roles: topic name -> role (a ``TopicSettings`` field name), the ``topic`` label
            of ``produce_errors``; other topics count as ``other``.

    No network work happens in ``__init__``; call :meth:`start` first.
    """

    def __init__(
        self, config: Mapping[str, str], *, poll_interval_s: float = 0.05, metrics: Metrics | None = None,
        topic_roles: Mapping[str, str] | None = None,
    ) -> None:
        self._config: dict[str, Any] = dict(config)
        self._metrics = metrics if metrics is not None else Metrics()
        self._topic_roles = dict(topic_roles or {})
        self._config["enable.idempotence"] = "true"
        self._poll_interval_s = poll_interval_s
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # Delivery results from librdkafka's callback threads, drained on the loop: a record's
        # own future, or the group (produce_many_nowait) it belongs to.
        self._results: collections.deque[tuple[_Entry, Any]] = collections.deque()
        # Records librdkafka could not queue yet (or must produce again), in order.
        self._overflow: collections.deque[_Entry] = collections.deque()
        self._overflow_timer: asyncio.TimerHandle | None = None
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._latched: KafkaError | None = None
        self._fatal: KafkaError | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Records not yet acknowledged or failed (the overflow queue's included)."""
        return self._in_flight

    @property
    def backlog(self) -> int:
        """Records waiting in the overflow queue for room in librdkafka's queue."""
        return len(self._overflow)

    async def start(self) -> None:
        """Create the client and start the poll thread.

        Raises:
            ProduceError: the configuration is invalid.
        """
        if self._producer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._config["error_cb"] = self._on_client_error
        self._config["logger"] = LIBRDKAFKA_LOGGER
        try:
            self._producer = Producer(self._config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ProduceError(f"invalid producer configuration: {exc}", retriable=False) from None
        self._thread = threading.Thread(
            target=self._poll_loop, args=(self._producer,), name="kafka-producer-poll", daemon=True
        )
        self._thread.start()

    def _poll_loop(self, producer: Producer) -> None:
        while not self._stop.is_set():
            producer.poll(self._poll_interval_s)
            self._hand_over()
        producer.poll(0)
        self._hand_over()

    def _hand_over(self) -> None:
        """Schedule one drain of the results collected by the last poll (thread side)."""
        if self._results and self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed between the check and the call
                pass

    def _on_client_error(self, err: Any) -> None:
        """librdkafka ``error_cb`` (poll thread): only fatal errors change our state."""
        if err.fatal():
            exc = from_kafka_error(ProduceError, err, "fatal producer error")
            log.error("%s", exc)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._set_fatal, exc)
        else:
            # Connection attempts fail often while a broker is away; librdkafka retries them.
            level = logging.DEBUG if err.name() == "_TRANSPORT" else logging.WARNING
            log.log(level, "producer client error: %s", err.str())

    def _set_fatal(self, exc: KafkaError) -> None:
        self._fatal = exc

    def _drain(self) -> None:
        """Resolve the futures of every delivered record (loop side); produce again the ones
        a retriable failure returned."""
        while self._results:
            entry, err = self._results.popleft()
            if err is not None and is_retriable(err) and not self._closed:
                self._metrics.produce_retries.labels(topic=self._topic_roles.get(entry.topic, OTHER)).inc()
                log.warning("delivery to %s failed (%s); producing it again", entry.topic, err.name())
                self._overflow.append(entry)  # still in flight: not counted down
                self._schedule_overflow(0.0)
                continue
            self._in_flight -= 1
            if err is not None:
                self._count_error(entry.topic)
            target = entry.target
            if err is not None and (target.done() or isinstance(target, _Group)) and self._latched is None:
                # nobody awaits this very record (a cancelled caller, or one record of a group)
                self._latched = from_kafka_error(ProduceError, err, "delivery failed")
            if isinstance(target, _Group):
                target.acked(err)
            elif target.done():  # the caller was cancelled; its record's fate is latched above
                continue
            elif err is None:
                target.set_result(None)
            else:
                exc = from_kafka_error(ProduceError, err, "delivery failed")
                if self._latched is None:
                    self._latched = exc
                target.set_exception(exc)
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()

    def _raise_latched(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._latched is not None:
            exc, self._latched = self._latched, None
            raise exc

    def _count_error(self, topic: str) -> None:
        """Count one record that could not be produced (any thread: counters are thread-safe)."""
        self._metrics.produce_errors.labels(topic=self._topic_roles.get(topic, OTHER)).inc()

    def produce_nowait(
        self, topic: str, value: bytes | None, key: bytes | None = None, headers: Headers | None = None
    ) -> asyncio.Future[None]:
        """Queue one record without waiting; the returned future resolves on acknowledgement.

        A full local queue never fails the call: the record waits in the overflow queue.

        Raises:
            ProduceError: the producer is not started or closed, a previous delivery failed
                (latched), or the record can never be queued (too large, unknown topic).
        """
        fut: asyncio.Future[None] = self._check_open().create_future()
        self._enqueue(_Entry(topic, value, key, list(headers) if headers else None, fut))
        return fut

    def produce_many_nowait(self, records: Iterable[Record]) -> asyncio.Future[None]:
        """Queue several records as one group; one future resolves when all are acknowledged.

        The cheap path for many small records settled together (audit records of one window
        output): one future and one wake-up instead of one per record. A failed record fails
        the future (and is latched like any fire-and-forget failure).

        Raises:
            ProduceError: as :meth:`produce_nowait`; records queued before the failing one
                stay queued.
        """
        group = _Group(self._check_open().create_future())
        try:
            for topic, value, key in records:
                self._enqueue(_Entry(topic, value, key, None, group))
                group.pending += 1
        finally:
            group.seal()
        return group.future

    def _check_open(self) -> asyncio.AbstractEventLoop:
        """The loop to resolve futures on, once the producer is usable.

        Raises:
            ProduceError: not started or closed, or a previous delivery failed (latched).
        """
        if self._producer is None or self._loop is None or self._idle is None or self._closed:
            raise ProduceError("producer is not started or already closed", retriable=False)
        self._raise_latched()
        return self._loop

    def _enqueue(self, entry: _Entry) -> None:
        """Hand one record to librdkafka, or to the overflow queue behind earlier ones.

        Raises:
            ProduceError: the record can never be queued (too large, unknown topic).
        """
        assert self._idle is not None  # noqa: S101 - _check_open ran
        if not self._overflow and self._hand_to_librdkafka(entry):
            pass
        else:
            self._overflow.append(entry)
            self._schedule_overflow(_QUEUE_FULL_BACKOFF_S)
        self._in_flight += 1
        self._idle.clear()

    def _hand_to_librdkafka(self, entry: _Entry) -> bool:
        """``produce()`` one record; False when the local queue is full.

        Raises:
            ProduceError: the record can never be queued.
        """
        assert self._producer is not None  # noqa: S101 - _check_open ran
        results = self._results

        def on_delivery(err: Any, _msg: Any) -> None:  # the poll thread: append only
            results.append((entry, err))

        try:
            self._producer.produce(entry.topic, value=entry.value, key=entry.key, headers=entry.headers,
                                   on_delivery=on_delivery)
        except BufferError:
            return False
        except KafkaException as exc:
            self._count_error(entry.topic)
            raise from_kafka_error(ProduceError, exc.args[0], f"cannot produce to {entry.topic}") from None
        return True

    def _schedule_overflow(self, delay: float) -> None:
        if self._overflow_timer is None and self._loop is not None and not self._loop.is_closed():
            self._overflow_timer = self._loop.call_later(delay, self._hand_over_overflow)

    def _hand_over_overflow(self) -> None:
        """Move the overflow queue into librdkafka's, in order, until it is full again."""
        self._overflow_timer = None
        while self._overflow:
            entry = self._overflow[0]
            try:
                if not self._hand_to_librdkafka(entry):
                    self._schedule_overflow(_QUEUE_FULL_BACKOFF_S)
                    return
            except ProduceError as exc:  # can never be queued: fail that record alone
                self._overflow.popleft()
                self._results.append((entry, _Refused(exc)))
                self._drain()
                continue
            self._overflow.popleft()

    async def produce(
        self, topic: str, value: bytes | None, key: bytes | None = None, headers: Headers | None = None
    ) -> None:
        """Produce one record and wait until the broker acknowledged it (a full local queue
        and retriable delivery failures are waited out).

        Raises:
            ProduceError: the record was refused for good, or a previous delivery failure was
                latched.
        """
        fut = self.produce_nowait(topic, value, key=key, headers=headers)
        try:
            await fut
        except ProduceError as exc:
            if self._latched is exc:  # this caller sees it; do not raise it twice
                self._latched = None
            raise

    async def flush(self, timeout: float) -> None:
        """Wait until every queued record is acknowledged or failed.

        Raises:
            ProduceError: records are still in flight after ``timeout`` seconds (retriable),
                or a delivery failed since the last check (latched).
        """
        if self._idle is None:
            return
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            self._raise_latched()
            raise ProduceError(
                f"{self._in_flight} record(s) still unacknowledged after {time.monotonic() - start:.1f}s",
                retriable=True,
            ) from None
        self._raise_latched()

    async def close(self, timeout: float = 10.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop the poll thread.

        Raises:
            ProduceError: records were left unacknowledged, or a latched failure.
        """
        if self._producer is None or self._closed:
            return
        try:
            await self.flush(timeout)
        finally:
            self._closed = True
            self._stop.set()
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join)
            self._drain()


@dataclass(slots=True)
class _Entry:
    """One record until its final delivery report (kept to produce it again)."""

    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, str | bytes | None]] | None
    target: asyncio.Future[None] | _Group


class _Refused:
    """A delivery error for a record librdkafka refused to queue (looks like its errors)."""

    def __init__(self, exc: ProduceError) -> None:
        self._exc = exc

    def name(self) -> str:
        return self._exc.code or "_REFUSED"

    def str(self) -> str:  # librdkafka's KafkaError spells it so
        return str(self._exc)

    def retriable(self) -> bool:
        return False

    def fatal(self) -> bool:
        return False


class _Group:
    """Records produced together and acknowledged as one (see ``produce_many_nowait``).

    Delivery reports are counted on the loop (``acked``, called by ``_drain``), so no lock.
    """

    __slots__ = ("_error", "_sealed", "future", "pending")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.pending = 0
        self._sealed = False
        self._error: Any = None

    def done(self) -> bool:
        return self.future.done()

    def acked(self, err: Any) -> None:
        self.pending -= 1
        if err is not None and self._error is None:
            self._error = err
        self._maybe_resolve()

    def seal(self) -> None:
        self._sealed = True
        self._maybe_resolve()

    def _maybe_resolve(self) -> None:
        if not self._sealed or self.pending or self.future.done():
            return
        if self._error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(from_kafka_error(ProduceError, self._error, "delivery failed"))
