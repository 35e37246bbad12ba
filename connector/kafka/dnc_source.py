"""Materialises the compacted ``dnc.numbers`` topic into a DNC table, like a GlobalKTable.

A dedicated thread owns its own ``Consumer``. It joins no group: every partition is
assigned directly at ``OFFSET_BEGINNING`` (librdkafka still wants a ``group.id``; nothing
is ever committed), so every instance holds the whole table.

Bootstrap: the high watermarks are taken once at start-up; the bootstrap is complete when
every partition's consumer *position* has reached its start-up watermark, or librdkafka
reported the end of the partition there. Not "last offset + 1": a transactional producer
leaves control records (commit markers) that are never delivered, so the last record seen
may sit below the watermark forever. An empty topic is ready at once.

Fast path: records are consumed in big batches; a key becomes an int with
:func:`connector.core.dnc_table.e164_to_int`, a value yields only its list name
(:func:`connector.serde.codec.read_dnc_list_name`), and the pairs go to
:meth:`connector.core.dnc_table.DncTable.add_many` in chunks. A tombstone (null value) removes its
number; pending additions are applied first so the topic's order is kept. A key that is not
E.164, or a value that cannot be read, is dead-lettered (stage ``dnc``) and skipped.

After the bootstrap the thread keeps following the topic and applies each polled batch at
once, so the loop sees a new DNC number within one poll (``poll_timeout_s``).

Sharing the table: the thread is the only writer; the asyncio loop reads. Every write (one
chunk of ``add_many``, one removal) and every :meth:`DncSource.lookup` holds
:attr:`DncSource.lock`, so a reader never sees a number half-moved between two lists.
Chunks are bounded (``chunk_size``) to keep the lock short. Readers must go through
:meth:`DncSource.lookup` or :meth:`DncSource.lookup_many` (or take the lock themselves),
never the bare table.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from connector.core.dnc_keys import parse_dnc_key
from connector.core.dnc_table import DncTable, e164_to_int
from connector.errors import SerdeError
from connector.kafka.dlq_headers import plain_headers
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.exceptions import DncBootstrapError, KafkaError, ProduceError, from_kafka_error, is_retriable
from connector.ops.metrics import Metrics
from connector.ops.runtime import DEFAULT_MMAP_THRESHOLD, pin_mmap_threshold, release_free_heap
from connector.serde.codec import read_dnc_list_name, unframe

log = logging.getLogger(__name__)

_PARTITION_EOF: int = getattr(RdKafkaError, "_PARTITION_EOF")  # noqa: B009
STAGE = "dnc"
#: Dead letters scheduled on the loop and not yet acknowledged, before the thread waits.
_MAX_OUTSTANDING_DLQ = 10_000
#: How often the thread refreshes the table-size and lag gauges.
_REPORT_INTERVAL_S = 1.0


class DncTableLike(Protocol):
    """The part of :class:`connector.core.dnc_table.DncTable` the materialiser writes and reads."""

    def add_many(self, pairs: Iterable[tuple[int, str]]) -> int: ...

    def remove(self, e164: str) -> None: ...

    def lookup(self, e164: str) -> str | None: ...

    def lookup_int(self, number: int) -> str | None: ...

    def lookup_many(self, numbers: Iterable[str]) -> dict[str, str]: ...

    def __len__(self) -> int: ...


class DncSource:
    """Reads the DNC topic into a table and keeps it current.

    Args:
        config: librdkafka consumer settings (see
            :func:`connector.kafka.client_config.dnc_consumer_config`).
        topic: the compacted DNC topic.
        table: where numbers go; a new :class:`connector.core.dnc_table.DncTable` by default.
        dead_letters: where bad records go; ``None`` only logs them.
        value_format: ``avro`` (schemaless), ``confluent`` (framed) or ``auto``.
        batch_size: ``num_messages`` of one ``consume()`` call. Small batches keep the
            bootstrap's short-lived Python objects (messages, pairs) within a few pymalloc
            arenas, which later stay pinned by a few long-lived objects (10,000: +0.4 B/number
            RSS at the same rate).
        chunk_size: additions applied under one lock acquisition.
        poll_timeout_s: how long one ``consume()`` call may block once live.
        metadata_timeout_s: deadline for the topic's metadata and watermarks at start-up.
        metrics: the ``dnc_*`` families and DNC dead letters (a private registry when ``None``).
        mmap_threshold: fixes glibc's mmap threshold for the process before the bootstrap
            (:func:`connector.ops.runtime.pin_mmap_threshold`), so the bulk load's big temporary
            buffers never sit in the heap between the table's containers (RSS ~1 byte per
            number lower); ``None`` leaves malloc alone.
    """

    def __init__(
        self,
        config: Mapping[str, str],
        topic: str,
        table: DncTableLike | None = None,
        *,
        dead_letters: DeadLetterWriter | None = None,
        value_format: Literal["avro", "confluent", "auto"] = "avro",
        batch_size: int = 2_000,
        chunk_size: int = 50_000,
        poll_timeout_s: float = 0.2,
        metadata_timeout_s: float = 10.0,
        metrics: Metrics | None = None,
        mmap_threshold: int | None = DEFAULT_MMAP_THRESHOLD,
    ) -> None:
        self._config: dict[str, Any] = dict(config)
        self._metrics = metrics if metrics is not None else Metrics()
        self._upserts = self._metrics.dnc_updates.labels(op="upsert")
        self._deletes = self._metrics.dnc_updates.labels(op="delete")
        self._dead_lettered = self._metrics.dead_lettered.labels(stage=STAGE)
        self._config.update({
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "true",
        })
        self._config.setdefault("group.id", "cxone-connector.core.dnc_table-materialiser")
        self.topic = topic
        self.table: DncTableLike = table if table is not None else DncTable()
        #: Held for every write by the thread and every read by :meth:`lookup`.
        self.lock = threading.Lock()
        self._dead_letters = dead_letters
        self._value_format = value_format
        self._batch_size = batch_size
        self._chunk_size = chunk_size
        self._poll_timeout_s = poll_timeout_s
        self._metadata_timeout_s = metadata_timeout_s
        self._mmap_threshold = mmap_threshold

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready_flag = threading.Event()
        self._ready: asyncio.Event | None = None
        self._done: asyncio.Future[None] | None = None
        self._failure: KafkaError | None = None
        self._dlq_slots = threading.BoundedSemaphore(_MAX_OUTSTANDING_DLQ)

        #: Seconds the bootstrap took (None until it completed).
        self.bootstrap_seconds: float | None = None
        #: Records read during the bootstrap.
        self.bootstrap_records = 0
        #: Counters since start: numbers added, tombstones applied, records dead-lettered.
        self.added = 0
        self.removed = 0
        self.rejected = 0
        self.last_poll = 0.0

    # ------------------------------------------------------------------ loop side

    @property
    def ready(self) -> bool:
        """True once the bootstrap completed (thread-safe)."""
        return self._ready_flag.is_set()

    @property
    def failure(self) -> KafkaError | None:
        """The error that stopped the thread, if any."""
        return self._failure

    def lookup(self, e164: str) -> str | None:
        """The DNC list blocking ``e164``, or None. Safe from any thread.

        A string that is not E.164 is reported as not blocked (the normaliser never
        produces one).
        """
        with self.lock:
            try:
                return self.table.lookup(e164)
            except ValueError:
                return None

    def lookup_many(self, numbers: Sequence[str]) -> dict[str, str]:
        """The blocked ones among E.164 ``numbers``: ``{number: list}``. Safe from any thread.

        One lock acquisition for the lot (the window asks once per consumed batch and once per
        flush). The numbers come from the normaliser, so they are not validated again; a
        string that is not a number is reported as not blocked.
        """
        if not numbers:
            return {}
        with self.lock:
            return self.table.lookup_many(numbers)

    def __len__(self) -> int:
        with self.lock:
            return len(self.table)

    async def start(self) -> None:
        """Start the materialiser thread; returns at once (see :meth:`wait_ready`)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._done = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="dnc-materialiser", daemon=True)
        self._thread.start()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the bootstrap completed.

        Raises:
            DncBootstrapError: the thread failed, or ``timeout`` seconds passed first
                (retriable).
        """
        if self._ready is None or self._done is None:
            raise DncBootstrapError("the DNC source is not started", retriable=False)
        ready: asyncio.Future[Any] = asyncio.ensure_future(self._ready.wait())
        stopped: asyncio.Future[Any] = self._done
        try:
            await asyncio.wait({ready, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._ready.is_set():
            return
        if self._failure is not None:
            raise self._failure
        if self._done.done():
            raise DncBootstrapError("the DNC source stopped before its bootstrap completed", retriable=True)
        raise DncBootstrapError(f"DNC bootstrap not complete after {timeout}s", retriable=True)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop following the topic and close the consumer."""
        if self._thread is None or self._done is None:
            return
        self._stop.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._done)
        except TimeoutError:
            log.error("DNC materialiser thread still running after %.1fs", timeout)

    def _set_ready(self) -> None:
        if self._ready is not None:
            self._ready.set()

    @staticmethod
    def _finish(fut: asyncio.Future[None]) -> None:
        if not fut.done():
            fut.set_result(None)

    def _send_dead_letter(self, fields: dict[str, Any]) -> None:
        """Queue one dead letter on the loop; the slot is freed when it is acknowledged."""
        writer = self._dead_letters
        if writer is None:
            self._dlq_slots.release()
            return
        try:
            fut = writer.send_nowait(**fields)
        except ProduceError as exc:
            self._dlq_slots.release()
            log.error("cannot dead-letter a DNC record: %s", exc)
            return
        self._dead_lettered.inc()

        def done(f: asyncio.Future[None]) -> None:
            self._dlq_slots.release()
            if not f.cancelled() and f.exception() is not None:
                log.error("dead letter of a DNC record failed: %s", f.exception())

        fut.add_done_callback(done)

    # ---------------------------------------------------------------- thread side

    def _call_loop(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass

    def _run(self) -> None:
        consumer: Consumer | None = None
        if self._mmap_threshold is not None:
            pin_mmap_threshold(self._mmap_threshold)
        try:
            consumer = Consumer(self._config)
            self._follow(consumer)
        except KafkaError as exc:
            self._failure = exc
            log.error("DNC materialiser stopped: %s", exc)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            self._failure = (
                from_kafka_error(DncBootstrapError, err, "DNC materialiser failed")
                if err is not None and hasattr(err, "fatal")
                else DncBootstrapError(f"DNC materialiser failed: {exc}", retriable=True)
            )
            log.error("%s", self._failure)
        except Exception as exc:
            self._failure = DncBootstrapError(f"DNC materialiser crashed: {exc!r}", retriable=False)
            log.exception("DNC materialiser crashed")
        finally:
            if self._failure is not None:
                self._metrics.set_dnc_state("failed")
            if consumer is not None:
                try:
                    consumer.close()
                except Exception:
                    log.exception("closing the DNC consumer failed")
            if self._done is not None:
                self._call_loop(self._finish, self._done)

    def _watermarks(self, consumer: Consumer) -> dict[int, tuple[int, int]]:
        metadata = consumer.list_topics(self.topic, timeout=self._metadata_timeout_s)
        topic_md = metadata.topics.get(self.topic)
        if topic_md is None or topic_md.error is not None or not topic_md.partitions:
            why = "no partitions"
            if topic_md is not None and topic_md.error is not None:
                why = topic_md.error.str()
            raise DncBootstrapError(f"DNC topic {self.topic} is not available: {why}", retriable=True)
        return {p: self._watermark(consumer, p) for p in sorted(topic_md.partitions)}

    def _watermark(self, consumer: Consumer, partition: int) -> tuple[int, int]:
        """One partition's watermarks; a retriable error (a leader still being elected on a
        topic created a moment ago) is retried until ``metadata_timeout_s``."""
        deadline = time.monotonic() + self._metadata_timeout_s
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=max(0.1, deadline - time.monotonic()))
                return low, high
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                retriable = isinstance(err, RdKafkaError) and is_retriable(err)
                if not retriable or time.monotonic() >= deadline or self._stop.is_set():
                    raise
                time.sleep(0.1)

    def _report(self, consumer: Consumer, partitions: Iterable[int]) -> None:
        """Refresh the table-size and lag gauges (thread side; positions and cached watermarks
        are local to the client, no broker round trip)."""
        self._metrics.dnc_numbers.set(len(self))
        lag = 0
        for tp in consumer.position([TopicPartition(self.topic, p) for p in partitions]):
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            lag += max(0, high - max(tp.offset, low))
        self._metrics.dnc_lag.set(lag)

    def _follow(self, consumer: Consumer) -> None:
        started = time.monotonic()
        self._metrics.set_dnc_state("loading")
        marks = self._watermarks(consumer)
        high = {p: hw for p, (_, hw) in marks.items()}
        # A partition with nothing between its low and high watermark has nothing to read.
        pending = {p for p, (low, hw) in marks.items() if hw > max(low, 0)}
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(marks)])
        log.info("DNC bootstrap: %d partition(s), %d record(s) at most",
                 len(marks), sum(hw - max(low, 0) for low, hw in marks.values()))
        bootstrapping = True
        next_report = 0.0
        while not self._stop.is_set():
            if bootstrapping and not pending:
                bootstrapping = False
                self._compact()
                self.bootstrap_seconds = time.monotonic() - started
                # the gauges say "ready" before /readyz can
                self._report(consumer, marks)
                self._metrics.dnc_bootstrap_duration.set(self.bootstrap_seconds)
                self._metrics.set_dnc_state("ready")
                self._ready_flag.set()
                self._call_loop(self._set_ready)
                log.info("DNC bootstrap complete: %d record(s) in %.2fs, %d number(s) blocked",
                         self.bootstrap_records, self.bootstrap_seconds, len(self))
            timeout = 0.05 if bootstrapping else self._poll_timeout_s
            messages = consumer.consume(num_messages=self._batch_size, timeout=timeout)
            self.last_poll = time.monotonic()
            added, removed = self.added, self.removed
            eof = self._apply(messages)
            if not bootstrapping:  # live updates only; the bootstrap is the table itself
                self._upserts.inc(self.added - added)
                self._deletes.inc(self.removed - removed)
            if self.last_poll >= next_report:
                next_report = self.last_poll + _REPORT_INTERVAL_S
                self._report(consumer, marks)
            if bootstrapping:
                self.bootstrap_records += len(messages) - len(eof)
                for p, offset in eof.items():
                    if offset >= high[p]:
                        pending.discard(p)
                if pending:
                    for tp in consumer.position([TopicPartition(self.topic, p) for p in pending]):
                        if tp.offset >= 0 and tp.offset >= high[tp.partition]:
                            pending.discard(tp.partition)

    def _compact(self) -> None:
        """After the bulk load: lay the bitmaps out packed and hand freed heap back
        (:meth:`connector.core.dnc_table.DncTable.compact`; under the lock, since the table is briefly
        empty while it is rebuilt)."""
        compact = getattr(self.table, "compact", None)  # a DncTableLike need not have it
        if compact is not None:
            with self.lock:
                compact(release_free_heap)
        release_free_heap()

    def _list_name(self, value: bytes) -> str:
        fmt = self._value_format
        if fmt == "confluent" or (fmt == "auto" and value[:1] == b"\x00" and len(value) >= 5):
            value = unframe(value)[1]
        return read_dnc_list_name(value)

    def _apply(self, messages: list[Message]) -> dict[int, int]:
        """Apply one consumed batch in order; returns ``{partition: offset}`` of EOF events."""
        eof: dict[int, int] = {}
        adds: list[tuple[int, str]] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == _PARTITION_EOF:
                    eof[msg.partition() or 0] = msg.offset() or 0
                elif err.fatal():
                    raise KafkaException(err)
                else:
                    log.warning("DNC consumer error: %s", err.str())
                continue
            key = msg.key()
            value = msg.value()
            try:
                e164 = parse_dnc_key(key, _no_respelling).e164  # interim: the list still comes from the value
                number = e164_to_int(e164)
            except ValueError:
                self._reject(msg, "ValueError", "DNC key is not an E.164 number")
                continue
            if value is None:
                if adds:
                    self._add(adds)
                    adds = []
                with self.lock:
                    self.table.remove(e164)
                self.removed += 1
                continue
            try:
                list_name = self._list_name(value)
            except SerdeError as exc:
                self._reject(msg, "connector.errors.SerdeError", str(exc))
                continue
            adds.append((number, list_name or "unnamed"))
            if len(adds) >= self._chunk_size:
                self._add(adds)
                adds = []
        if adds:
            self._add(adds)
        return eof

    def _add(self, pairs: list[tuple[int, str]]) -> None:
        with self.lock:
            self.table.add_many(pairs)
        self.added += len(pairs)

    def _reject(self, msg: Message, error_class: str, message: str) -> None:
        self.rejected += 1
        partition = msg.partition() or 0
        offset = msg.offset() or 0
        log.warning("DNC record %s[%d]@%d rejected: %s", self.topic, partition, offset, message)
        fields = {
            "key": msg.key(), "value": msg.value(), "headers": plain_headers(msg.headers()),
            "topic": self.topic, "partition": partition, "offset": offset,
            "stage": STAGE, "error_class": error_class, "message": message,
        }
        # Wait for a slot so a topic full of garbage cannot queue unbounded work on the loop.
        while not self._dlq_slots.acquire(timeout=0.5):
            if self._stop.is_set():
                return
        self._call_loop(self._send_dead_letter, fields)


def _no_respelling(spelling: str) -> str | None:
    return None
