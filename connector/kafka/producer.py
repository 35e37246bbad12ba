"""An asyncio face on confluent-kafka's ``Producer``.

``await produce(...)`` resolves when the broker acknowledged the record. A dedicated poll
thread serves librdkafka's delivery callbacks; results are collected and handed to the
event loop in bunches with ``loop.call_soon_threadsafe`` (one wake-up per poll, not one per
record).

Delivery errors are *latched*, as quix-streams does: the first failure that no awaiting
caller has seen is raised again by the next :meth:`AsyncProducer.produce`,
:meth:`~AsyncProducer.produce_nowait` or :meth:`~AsyncProducer.flush`, so a fire-and-forget
record that failed cannot go unnoticed. A fatal error (the idempotent producer lost its
guarantees) stays latched for good: the instance must be replaced.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from connector.kafka.exceptions import KafkaError, ProduceError, from_kafka_error
from connector.ops.metrics import OTHER, Metrics

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
#: ``(topic, value, key)`` of one record in :meth:`AsyncProducer.produce_many_nowait`.
Record = tuple[str, bytes | None, bytes | None]

# How long produce() waits between attempts when librdkafka's local queue is full.
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
        self._results: collections.deque[tuple[asyncio.Future[None] | _Group, Any]] = collections.deque()
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._latched: KafkaError | None = None
        self._fatal: KafkaError | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Records handed to librdkafka and not yet acknowledged or failed."""
        return self._in_flight

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
        """Resolve the futures of every delivered record (loop side)."""
        while self._results:
            target, err = self._results.popleft()
            self._in_flight -= 1
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

        Raises:
            ProduceError: the producer is not started or closed, a previous delivery failed
                (latched), or the record cannot be queued (too large, unknown topic, queue
                full: ``retriable`` says which).
        """
        loop = self._check_open()
        fut: asyncio.Future[None] = loop.create_future()
        results = self._results

        def on_delivery(err: Any, _msg: Any) -> None:
            results.append((fut, err))
            if err is not None:
                self._count_error(topic)

        self._produce_one(topic, value, key, headers, on_delivery)
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
        group = _Group(self._check_open().create_future(), self._results, self._count_error)
        on_delivery = group.on_delivery
        try:
            for topic, value, key in records:
                self._produce_one(topic, value, key, None, on_delivery)
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

    def _produce_one(self, topic: str, value: bytes | None, key: bytes | None,
                     headers: Headers | None, on_delivery: Callable[[Any, Any], None]) -> None:
        """Hand one record to librdkafka and count it in flight.

        Raises:
            ProduceError: the record cannot be queued (too large, unknown topic, queue full:
                ``retriable`` says which).
        """
        assert self._producer is not None and self._idle is not None  # noqa: S101 - _check_open ran
        try:
            self._producer.produce(topic, value=value, key=key, headers=list(headers) if headers else None,
                                   on_delivery=on_delivery)
        except BufferError:
            raise ProduceError("local producer queue is full", retriable=True, code="_QUEUE_FULL") from None
        except KafkaException as exc:
            self._count_error(topic)
            raise from_kafka_error(ProduceError, exc.args[0], f"cannot produce to {topic}") from None
        self._in_flight += 1
        self._idle.clear()

    async def produce(
        self, topic: str, value: bytes | None, key: bytes | None = None, headers: Headers | None = None
    ) -> None:
        """Produce one record and wait until the broker acknowledged it.

        A full local queue is waited out (librdkafka drains it as the broker acknowledges).

        Raises:
            ProduceError: the record was not acknowledged (``retriable`` from librdkafka), or a
                previous delivery failure was latched.
        """
        while True:
            try:
                fut = self.produce_nowait(topic, value, key=key, headers=headers)
                break
            except ProduceError as exc:
                if exc.code != "_QUEUE_FULL":
                    raise
                await asyncio.sleep(_QUEUE_FULL_BACKOFF_S)
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


class _Group:
    """Records produced together and acknowledged as one (see ``produce_many_nowait``).

    ``on_delivery`` runs on the poll thread and only appends to the shared deque; the
    counting happens on the loop (``acked``, called by ``_drain``), so it needs no lock.
    """

    __slots__ = ("_count_error", "_error", "_results", "_sealed", "future", "pending")

    def __init__(
        self,
        future: asyncio.Future[None],
        results: collections.deque[tuple[asyncio.Future[None] | _Group, Any]],
        count_error: Callable[[str], None],
    ) -> None:
        self.future = future
        self.pending = 0
        self._results = results
        self._count_error = count_error
        self._sealed = False
        self._error: Any = None

    def on_delivery(self, err: Any, msg: Any) -> None:
        self._results.append((self, err))
        if err is not None:
            self._count_error(msg.topic() if msg is not None else "")

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
