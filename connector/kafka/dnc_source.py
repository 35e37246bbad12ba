"""Materialises the compacted ``dnc.numbers`` topic into a DNC table, like a GlobalKTable.

The thread (:class:`connector.kafka.dnc_follower.TopicFollower`) owns its own ``Consumer``,
joins no group (every partition is assigned directly), and carries out what the pure core
decides (:mod:`connector.core.dnc_materialiser`, :mod:`connector.core.dnc_records`). Every
instance holds the whole table.

What the app calls (the loop side, all cheap and thread-safe):

- :meth:`DncSource.start`, then :meth:`DncSource.wait_ready` (optional) and
  :meth:`DncSource.close` (writes a last snapshot on a clean shutdown);
- :meth:`DncSource.currency`: ``(current, reason, not_current_since)``. *Current* means the
  thread is alive, the table caught up with the topic (every partition up to the high
  watermark it had when first seen: at start-up, or when it was added later) and every
  partition had a successful fetch within ``dnc.max_stall_s``. Submit nothing while it is
  not; exit after ``dnc.max_unavailable_s`` of it. A thread that dies, a broker that is
  down (at start-up too: the start is retried, never a crash), a partition whose fetches
  fail: all make it not current, with the reason;
- :meth:`DncSource.lookup_many` (the window: ``{number: list}``, one list per blocked
  number, the first by name), :meth:`DncSource.lookup`, :meth:`DncSource.lists_of` (every
  list of a number).

Sharing the table: the thread is the only writer; each consumed batch's operations are
applied under :attr:`DncSource.lock`, which every look-up takes too, so a reader never sees
a number half-moved between two lists. Readers go through the methods above (or take the
lock themselves), never the bare table.

Snapshots (``dnc.state_dir``): see :mod:`connector.core.dnc_snapshot` for the format and
the rules of trust; a start with a trusted snapshot reads only the tail of the topic.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connector.config import Settings
from connector.core.dnc_materialiser import Currency, DeadLetter, Decoded
from connector.core.dnc_records import REJECT_REASONS, DncRecordDecoder
from connector.core.dnc_snapshot import SnapshotReader, dnc_body, read_dnc_body
from connector.core.dnc_table import DncTable, TableOp
from connector.core.phones import PhoneNormalizer
from connector.errors import PhoneError
from connector.kafka.dlq_headers import plain_headers
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.dnc_follower import EOF_CODE, TopicFollower
from connector.kafka.exceptions import DncBootstrapError, KafkaError, ProduceError
from connector.ops.metrics import Metrics
from connector.ops.runtime import DEFAULT_MMAP_THRESHOLD, pin_mmap_threshold, release_free_heap

log = logging.getLogger(__name__)

STAGE = "dnc"
#: Dead letters scheduled on the loop and not yet acknowledged, before the thread waits.
_MAX_OUTSTANDING_DLQ = 10_000
#: Numbers gathered into runs while bootstrapping before they are applied (an ``array('Q')``
#: each: 8 bytes per number, no Python object).
_GATHER = 500_000


class DncTableLike(Protocol):
    """The part of :class:`connector.core.dnc_table.DncTable` the materialiser writes and reads."""

    def apply(self, ops: Iterable[TableOp]) -> None: ...

    def expire(self, now_ms: int) -> int: ...

    def lookup(self, e164: str) -> str | None: ...

    def lists_of(self, e164: str) -> tuple[str, ...]: ...

    def lookup_many(self, numbers: Iterable[str]) -> dict[str, str]: ...

    def __len__(self) -> int: ...


class _Follower(TopicFollower[TableOp]):
    """The DNC table's hooks of the thread shell."""

    kind = "dnc"

    def __init__(self, source: DncSource, config: Mapping[str, Any], topic: str, **kwargs: Any) -> None:
        self._source = source
        self._pending: list[TableOp] = []
        self._gathered = 0
        super().__init__(config, topic, **kwargs)

    def decoder(self) -> DncRecordDecoder:
        s = self._source
        normaliser = PhoneNormalizer(s.default_region, cache_size=1024)

        def normalise(spelling: str) -> str | None:
            try:
                return normaliser.normalize(spelling)
            except PhoneError:
                return None

        return DncRecordDecoder(normalise, unreadable_list=s.unreadable_list, wire_format=s.value_format,
                                eof_code=EOF_CODE)

    def apply(self, ops: list[TableOp], final: bool) -> None:
        """Apply at once when ready; while bootstrapping, gather consecutive operations of
        one key class, list and expiry into runs of up to :data:`_GATHER` numbers: a big
        sorted run goes into a bitmap several times faster than many small ones."""
        pending = self._pending
        for op in ops:
            last = pending[-1] if pending else None
            if last is not None and last[:2] == op[:2] and last.expires_ms == op.expires_ms \
                    and type(last.numbers) is type(op.numbers) and hasattr(last.numbers, "extend"):
                last.numbers.extend(op.numbers)
            else:
                pending.append(op)
            self._gathered += len(op.numbers)
        if pending and (final or self._gathered >= _GATHER):
            self._pending, self._gathered = [], 0
            with self._source.lock:
                self._source.table.apply(pending)

    def on_decoded(self, decoded: Decoded[TableOp], live: bool) -> None:
        self._source.counted(decoded, live)

    def loaded(self) -> None:
        self._source.loaded(self.core.ready_at, self.core.bootstrap_records)

    def expire(self, now_ms: int) -> int:
        s = self._source
        with s.lock:
            count = s.table.expire(now_ms)
        if count:
            s.metrics.dnc_updates.labels(op="expire").inc(count)
        return count

    def snapshot_body(self) -> Iterable[bytes]:
        table = self._source.table  # this thread is the only writer: read without the lock
        if not isinstance(table, DncTable):
            raise OSError("only a DncTable can be snapshotted")
        return dnc_body(table)

    def snapshot_lists(self) -> list[str]:
        table = self._source.table
        return sorted(table.list_sizes()) if isinstance(table, DncTable) else []

    def read_snapshot_body(self, reader: SnapshotReader) -> DncTable:
        return read_dnc_body(reader)

    def adopt(self, table: Any, seconds: float) -> None:
        with self._source.lock:
            self._source.table = table
        self._source.restored = True
        self._source.metrics.dnc_restored.set(1)
        self._source.metrics.dnc_restore_duration.set(seconds)

    def state_changed(self) -> None:
        self._source.state_changed()

    def report(self, consumer: Consumer) -> None:
        self._source.report(consumer, self.core.positions(), self.view.currency.current)

    def rebuilt(self, reason: str) -> None:
        self._source.metrics.dnc_rebuilds.labels(reason=reason).inc()
        self._source.metrics.dnc_restored.set(0)

    def snapshot_written(self, size: int | None, seconds: float) -> None:
        m = self._source.metrics
        if size is None:
            m.dnc_snapshot_writes.labels(outcome="error").inc()
            return
        m.dnc_snapshot_writes.labels(outcome="ok").inc()
        m.dnc_snapshot_bytes.set(size)
        m.dnc_snapshot_write_duration.set(seconds)
        m.dnc_snapshot_last_write.set_to_current_time()
        log.info("DNC snapshot written: %d bytes in %.2fs", size, seconds)


class _DeadLetters:
    """DNC records to the DLQ (stage ``dnc``): handed from the thread to the loop, at most
    :data:`_MAX_OUTSTANDING_DLQ` unacknowledged (the thread waits beyond)."""

    def __init__(self, source: DncSource, writer: DeadLetterWriter | None) -> None:
        self._source = source
        self._writer = writer
        self.slots = threading.BoundedSemaphore(_MAX_OUTSTANDING_DLQ)

    def send(self, letter: DeadLetter) -> None:
        """Thread side: log it (no key, no number) and queue it on the loop."""
        s = self._source
        log.warning("DNC record %s[%d]@%d rejected (%s): %s", s.topic, letter.partition, letter.offset,
                    letter.reason, letter.message)
        record = letter.record
        headers = getattr(record, "headers", lambda: None)()
        fields = {
            "key": record.key(), "value": record.value(), "headers": plain_headers(headers),
            "topic": s.topic, "partition": letter.partition, "offset": letter.offset,
            "stage": STAGE, "error_class": letter.error_class, "message": letter.message,
        }
        # Wait for a slot so a topic full of garbage cannot queue unbounded work on the loop.
        while not self.slots.acquire(timeout=0.5):
            if s.stopping:
                return
        s.call_loop(self._send, fields)

    def _send(self, fields: dict[str, Any]) -> None:
        """Loop side: produce it; the slot is freed when it is acknowledged."""
        if self._writer is None:
            self.slots.release()
            return
        try:
            fut = self._writer.send_nowait(**fields)
        except ProduceError as exc:
            self.slots.release()
            log.error("cannot dead-letter a DNC record: %s", exc)
            return
        self._source.metrics.dead_lettered.labels(stage=STAGE).inc()

        def done(f: asyncio.Future[None]) -> None:
            self.slots.release()
            if not f.cancelled() and f.exception() is not None:
                log.error("dead letter of a DNC record failed: %s", f.exception())

        fut.add_done_callback(done)


class DncSource:
    """Reads the DNC topic into a table, keeps it current, and says whether it is.

    Args:
        config: librdkafka consumer settings (see
            :func:`connector.kafka.client_config.dnc_consumer_config`).
        topic: the compacted DNC topic.
        table: where numbers go; a new :class:`connector.core.dnc_table.DncTable` by default
            (a restored snapshot replaces it).
        dead_letters: where bad records go; ``None`` only logs them.
        value_format: ``avro`` (schemaless), ``confluent`` (framed) or ``auto``.
        batch_size: ``num_messages`` of one ``consume()`` call.
        poll_timeout_s: how long one ``consume()`` call may block once ready.
        metadata_timeout_s: deadline of one metadata or watermark request.
        metrics: the ``dnc_*`` families and DNC dead letters (a private registry when ``None``).
        mmap_threshold: fixes glibc's mmap threshold for the process before the bootstrap
            (:func:`connector.ops.runtime.pin_mmap_threshold`); ``None`` leaves malloc alone.
        max_stall_s, default_region, unreadable_list, state_dir, snapshot_interval_s: the
            ``[dnc]`` settings of the same names (``docs/operations.md``).
        metadata_interval_s: how often new partitions are looked for.
        clock, wall_clock, before_rename: injectable for tests.
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
        poll_timeout_s: float = 0.2,
        metadata_timeout_s: float = 10.0,
        metrics: Metrics | None = None,
        mmap_threshold: int | None = DEFAULT_MMAP_THRESHOLD,
        max_stall_s: float = 30.0,
        default_region: str = "US",
        unreadable_list: str = "unreadable",
        state_dir: str = "",
        snapshot_interval_s: float = 300.0,
        metadata_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        before_rename: Callable[[Any], None] | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        self.topic = topic
        self.table: DncTableLike = table if table is not None else DncTable()
        #: Held for every write by the thread and every read by the look-ups.
        self.lock = threading.Lock()
        self.value_format = value_format
        self.default_region = default_region
        self.unreadable_list = unreadable_list
        self._letters = _DeadLetters(self, dead_letters)
        self._mmap_threshold = mmap_threshold
        self._clock = clock
        self._created = clock()
        self._follower = _Follower(
            self, config, topic, max_stall_s=max_stall_s, batch_size=batch_size, poll_timeout_s=poll_timeout_s,
            metadata_timeout_s=metadata_timeout_s, metadata_interval_s=metadata_interval_s, state_dir=state_dir,
            snapshot_interval_s=snapshot_interval_s, clock=clock, wall_clock=wall_clock, before_rename=before_rename)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready: asyncio.Event | None = None
        self._done: asyncio.Future[None] | None = None
        self._stopped_at: float | None = None
        #: Seconds from start to the first readiness (None until then), and records read so far.
        self.bootstrap_seconds: float | None = None
        self.bootstrap_records = 0
        #: True when the table was started from a snapshot.
        self.restored = False
        #: Counters since start: entries added, tombstones applied, records dead-lettered.
        self.added = 0
        self.removed = 0
        self.rejected = 0

    @classmethod
    def from_settings(cls, settings: Settings, config: Mapping[str, str], **kwargs: Any) -> DncSource:
        """A source configured from ``settings`` (``[dnc]``, ``topics.dnc``, the value format)."""
        dnc = settings.dnc
        return cls(config, settings.topics.dnc, value_format=settings.kafka.value_format,
                   max_stall_s=dnc.max_stall_s, default_region=dnc.default_region,
                   unreadable_list=dnc.unreadable_list, state_dir=dnc.state_dir,
                   snapshot_interval_s=dnc.snapshot_interval_s, **kwargs)

    # ------------------------------------------------------------------ loop side

    @property
    def ready(self) -> bool:
        """True while the table is caught up with every partition and the thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._follower.failure is None and self._follower.ready

    @property
    def failure(self) -> KafkaError | None:
        """The error that stopped the thread, if any."""
        return self._follower.failure

    @property
    def last_poll(self) -> float:
        return self._follower.last_poll

    def currency(self) -> Currency:
        """Whether the DNC table is current: ``(current, reason, not_current_since)``.

        Cheap (no lock, no I/O); call it before every submit. ``not_current_since`` is the
        monotonic time it stopped being current, or the time the source was created when it
        never was; None while current.
        """
        thread = self._thread
        if thread is None:
            return Currency(False, "the DNC source is not started", self._created)
        failure = self._follower.failure
        if failure is not None:
            return Currency(False, f"the DNC materialiser stopped: {failure}", self._stopped_at or self._created)
        if not thread.is_alive():
            return Currency(False, "the DNC materialiser thread is not running", self._stopped_at or self._created)
        return self._follower.view.at(self._clock())

    def lookup(self, e164: str) -> str | None:
        """The first DNC list (by name) blocking ``e164``, or None. A string that is not E.164
        is reported as not blocked (the normaliser never produces one)."""
        with self.lock:
            try:
                return self.table.lookup(e164)
            except ValueError:
                return None

    def lists_of(self, e164: str) -> tuple[str, ...]:
        """Every DNC list blocking ``e164`` (sorted); empty when it may be called."""
        with self.lock:
            try:
                return self.table.lists_of(e164)
            except ValueError:
                return ()

    def lookup_many(self, numbers: Sequence[str]) -> dict[str, str]:
        """The blocked ones among E.164 ``numbers``: ``{number: list}``, one lock acquisition."""
        if not numbers:
            return {}
        with self.lock:
            return self.table.lookup_many(numbers)

    def __len__(self) -> int:
        with self.lock:
            return len(self.table)

    async def start(self) -> None:
        """Start the materialiser thread; returns at once (see :meth:`currency`)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._done = self._loop.create_future()
        self.metrics.set_dnc_state("loading")
        self._thread = threading.Thread(target=self._run, name="dnc-materialiser", daemon=True)
        self._thread.start()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the table is ready (caught up).

        Raises:
            DncBootstrapError: the source is not started (not retriable), ``timeout`` passed
                first (retriable; the message says why, from :meth:`currency`).
            KafkaError: the thread stopped with this failure.
        """
        if self._ready is None or self._done is None:
            raise DncBootstrapError("the DNC source is not started", retriable=False)
        ready: asyncio.Future[Any] = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({ready, self._done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self.ready:
            return
        if self.failure is not None:
            raise self.failure
        if self._done.done():
            raise DncBootstrapError("the DNC source stopped before it was ready", retriable=True)
        raise DncBootstrapError(f"DNC table not ready after {timeout}s: {self.currency().reason}", retriable=True)

    async def close(self, timeout: float = 30.0) -> None:
        """Stop following the topic, write a last snapshot (``dnc.state_dir``) and close the
        consumer; waits at most ``timeout`` seconds."""
        if self._thread is None or self._done is None:
            return
        self._follower.stop.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._done)
        except TimeoutError:
            log.error("DNC materialiser thread still running after %.1fs", timeout)

    def _sync_ready(self) -> None:
        if self._ready is not None:
            if self.ready:
                self._ready.set()
            else:
                self._ready.clear()

    @staticmethod
    def _finish(fut: asyncio.Future[None]) -> None:
        if not fut.done():
            fut.set_result(None)

    # ---------------------------------------------------------------- thread side

    @property
    def stopping(self) -> bool:
        return self._follower.stop.is_set()

    def call_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass

    def _run(self) -> None:
        if self._mmap_threshold is not None:
            pin_mmap_threshold(self._mmap_threshold)
        try:
            self._follower.run()
        finally:
            self._stopped_at = self._clock()
            if self._follower.failure is not None:
                self.metrics.set_dnc_state("failed")
            self.metrics.dnc_current.set(0)
            if self._done is not None:
                self.call_loop(self._finish, self._done)

    def state_changed(self) -> None:
        """Readiness or the verdict changed (thread side)."""
        self.metrics.dnc_current.set(1 if self._follower.view.currency.current else 0)
        if self._follower.failure is None:
            self.metrics.set_dnc_state("ready" if self._follower.ready else "loading")
        self.call_loop(self._sync_ready)

    def loaded(self, ready_at: float | None, records: int) -> None:
        """The table is ready for the first time: after a bulk load, lay the bitmaps out packed
        (thread side; a restored snapshot is packed already)."""
        compact = getattr(self.table, "compact", None)  # a DncTableLike need not have it
        if compact is not None and not self.restored:
            with self.lock:  # the table is briefly empty while it is rebuilt
                compact(release_free_heap)
        release_free_heap()
        self.bootstrap_seconds = (ready_at if ready_at is not None else self._clock()) - self._created
        self.bootstrap_records = records
        self.metrics.dnc_bootstrap_duration.set(self.bootstrap_seconds)
        log.info("DNC table ready: %d record(s) in %.2fs, %d number(s) blocked",
                 records, self.bootstrap_seconds, len(self))

    def counted(self, decoded: Decoded[TableOp], live: bool) -> None:
        """Counters and dead letters of one batch (thread side)."""
        counts = decoded.counts
        if not counts:
            return
        self.added += counts["upsert"]
        self.removed += counts["delete"] + counts["expired"]
        if live:
            self.metrics.dnc_updates.labels(op="upsert").inc(counts["upsert"])
            self.metrics.dnc_updates.labels(op="delete").inc(counts["delete"] + counts["expired"])
        for reason in REJECT_REASONS:
            if counts[reason]:
                self.metrics.dnc_rejected.labels(reason=reason).inc(counts[reason])
        for letter in decoded.dead_letters:
            self.rejected += 1
            self._letters.send(letter)

    def report(self, consumer: Consumer, positions: Mapping[int, int], current: bool) -> None:
        """Refresh the gauges (thread side; cached watermarks, no broker round trip)."""
        self.metrics.dnc_numbers.set(len(self))
        self.metrics.dnc_partitions.set(len(positions))
        self.metrics.dnc_current.set(1 if current else 0)
        lag = 0
        for partition, position in positions.items():
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            except KafkaException:
                continue  # not known (yet, or any more): the gauge is a hint, the verdict is currency()
            lag += max(0, high - max(position, low))
        self.metrics.dnc_lag.set(lag)
