"""The thread shell that materialises a compacted topic: it polls and carries out effects.

:class:`TopicFollower` owns one ``Consumer`` (assigned, no group membership, never commits)
on its own thread. Every decision is the pure core's
(:class:`connector.core.dnc_materialiser.Materialiser`); this class only talks to Kafka and
the disk, and calls the table-specific hooks a subclass provides (``decoder``, ``apply``,
``on_decoded``, ``loaded``, ``expire``, the snapshot body, ``state_changed``, ``report``).
:class:`connector.kafka.dnc_source.DncSource` is the DNC table's; another compacted topic keyed
by E.164 subclasses it the same way and gets the same bootstrap, current-ness and snapshot
rules.

Start-up waits for the broker: metadata, watermarks and the topic's admin facts are retried
with a capped backoff for as long as it takes (the table is not current meanwhile, with the
reason), never a crash; only ``stop`` ends the wait. Then a trusted snapshot is restored
(only the tail is read) or the topic is read from the beginning.

Evidence of fetches: with ``enable.partition.eof`` librdkafka emits an end-of-partition event
when a fetch reaches the end, but only once; a partition that receives nothing is therefore
*probed*: sought to its own position, after which the broker's next good answer is a fresh
end-of-partition event. An error answer produces no such event (an unknown topic, a failed
authorisation, an unreachable leader: librdkafka retries in the background and may report
nothing at all), so the partition goes stale and the table stops being current.
Client-level errors arrive through ``error_cb`` and go into the reason.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka.admin import AdminClient

from connector.core.dnc_materialiser import (
    BEGINNING,
    CurrencyView,
    Decoded,
    Decoder,
    Materialiser,
    OpT,
)
from connector.core.dnc_snapshot import SnapshotReader
from connector.kafka.client_config import with_logger
from connector.kafka.dnc_snapshots import SnapshotKeeper
from connector.kafka.dnc_state import SnapshotStore, admin_config
from connector.kafka.exceptions import DncBootstrapError, KafkaError, from_kafka_error, is_retriable

log = logging.getLogger(__name__)

EOF_CODE: int = getattr(RdKafkaError, "_PARTITION_EOF")  # noqa: B009
_ALL_BROKERS_DOWN: int = getattr(RdKafkaError, "_ALL_BROKERS_DOWN")  # noqa: B009
#: Consumer settings for a fast bootstrap (docs/benchmarks.md); the caller's settings win.
FAST_FETCH = {
    "fetch.message.max.bytes": "10485760", "fetch.max.bytes": "104857600",
    "receive.message.max.bytes": "105000000", "queued.min.messages": "1000000",
}
_LOG_EVERY_S = 30.0


class FollowerHooks(Generic[OpT]):
    """What a materialised table gives :class:`TopicFollower` (a subclass overrides these);
    all are called on the follower's thread."""

    kind = "table"

    def decoder(self) -> Decoder[OpT]:
        raise NotImplementedError

    def apply(self, ops: list[OpT], final: bool) -> None:
        """Carry out table operations (thread side; take the readers' lock). With ``final``
        False (the table is not ready yet) they may be gathered and carried out later, at
        the latest with the next ``final`` call, which comes before readiness is published."""
        raise NotImplementedError

    def on_decoded(self, decoded: Decoded[OpT], live: bool) -> None:
        """Dead letters and counters of one batch (``live``: after the first readiness)."""

    def loaded(self) -> None:
        """The table became ready for the first time (after a bulk load: compact it)."""

    def expire(self, now_ms: int) -> int:
        return 0

    def snapshot_body(self) -> Iterable[bytes]:
        raise NotImplementedError

    def snapshot_lists(self) -> list[str]:
        return []

    def read_snapshot_body(self, reader: SnapshotReader) -> Any:
        """Build a table from a snapshot's body (not yet in use)."""
        raise NotImplementedError

    def adopt(self, table: Any, seconds: float) -> None:
        """Start from a restored (and verified) table, read in ``seconds``."""
        raise NotImplementedError

    def state_changed(self) -> None:
        """Readiness or the verdict changed (hand it to the loop)."""

    def report(self, consumer: Consumer) -> None:
        """Refresh gauges (about once a second)."""

    def rebuilt(self, reason: str) -> None:
        """The table starts from the topic's beginning, because of ``reason``."""

    def snapshot_written(self, size: int | None, seconds: float) -> None:
        """A snapshot was written (``size`` None: the write failed)."""


class TopicFollower(FollowerHooks[OpT]):
    """Follows one compacted topic into a table on a dedicated thread (see the module doc).

    Args:
        config: librdkafka consumer settings.
        topic: the compacted topic.
        kind: the table's kind (snapshot header and file name).
        max_stall_s: see :class:`connector.core.dnc_materialiser.Materialiser`.
        batch_size: ``num_messages`` of one ``consume()`` call.
        poll_timeout_s: how long one ``consume()`` may block once ready.
        metadata_timeout_s: deadline of one metadata or watermark request.
        metadata_interval_s: how often the partition count is checked (new partitions).
        state_dir: where the snapshot lives; empty: no snapshots.
        snapshot_interval_s: how often a snapshot is written once ready.
        clock: monotonic seconds; wall_clock: epoch seconds (both injectable).
        before_rename: test hook of :class:`connector.kafka.dnc_state.SnapshotStore`.
    """

    def __init__(self, config: Mapping[str, Any], topic: str, *, max_stall_s: float, batch_size: int,
                 poll_timeout_s: float, metadata_timeout_s: float, metadata_interval_s: float = 10.0,
                 state_dir: str = "", snapshot_interval_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 before_rename: Callable[[Any], None] | None = None) -> None:
        self.topic = topic
        self._config: dict[str, Any] = {**FAST_FETCH, **config}
        self._config.update({"enable.auto.commit": "false", "enable.auto.offset.store": "false",
                             "enable.partition.eof": "true", "auto.offset.reset": "earliest"})
        self._config.setdefault("group.id", f"cxone-connector.{self.kind}-materialiser")
        chained = self._config.get("error_cb")
        self._config["error_cb"] = lambda err: self._client_error(err, chained)
        self._client_errors: collections.deque[Any] = collections.deque(maxlen=32)
        self._batch_size, self._poll_timeout_s = batch_size, poll_timeout_s
        self._metadata_timeout_s, self._metadata_interval_s = metadata_timeout_s, metadata_interval_s
        self._snapshot_interval_s = snapshot_interval_s
        self.clock, self.wall_clock = clock, wall_clock
        self.stop = threading.Event()
        self.core: Materialiser[OpT] = Materialiser(self.decoder(), max_stall_s=max_stall_s, created_at=clock())
        self.snapshots = SnapshotKeeper(
            self, SnapshotStore(state_dir, f"{topic}.{self.kind}.snapshot", before_rename=before_rename),
            self._config, metadata_timeout_s) if state_dir else None
        #: The verdict for other threads (replaced, never mutated).
        self.view: CurrencyView = self.core.assess(clock())
        self.ready = False
        self.failure: KafkaError | None = None
        self.last_poll = 0.0
        self._admin: AdminClient | None = None
        self._next_log = 0.0

    # ------------------------------------------------------------------ the thread

    def run(self) -> None:
        """The thread body: start, then follow until :attr:`stop`; a failure is kept in
        :attr:`failure` (the table is then not current)."""
        consumer: Consumer | None = None
        try:
            consumer = Consumer(with_logger(self._config))
            if self._start(consumer):
                self._follow(consumer)
                self._final_snapshot()
        except KafkaError as exc:
            self.failure = exc
            log.error("%s materialiser stopped: %s", self.kind, exc)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            self.failure = (from_kafka_error(DncBootstrapError, err, f"{self.kind} materialiser failed")
                            if err is not None and hasattr(err, "fatal")
                            else DncBootstrapError(f"{self.kind} materialiser failed: {exc}", retriable=False))
            log.error("%s", self.failure)
        except Exception as exc:
            self.failure = DncBootstrapError(f"{self.kind} materialiser crashed: {type(exc).__name__}",
                                             retriable=False)
            log.exception("%s materialiser crashed", self.kind)
        finally:
            self.ready = False
            self.state_changed()
            if consumer is not None:
                try:
                    consumer.close()
                except Exception:
                    log.exception("closing the %s consumer failed", self.kind)

    def _client_error(self, err: Any, chained: Callable[[Any], None] | None) -> None:
        self._client_errors.append(err)
        if chained is not None:
            chained(err)

    def _publish(self) -> None:
        was, self.view = self.view, self.core.assess(self.clock())
        ready = self.core.ready
        if ready != self.ready or was.currency.current != self.view.currency.current:
            self.ready = ready
            self.state_changed()

    def _warn(self, message: str, *args: Any) -> None:
        now = self.clock()
        if now >= self._next_log:
            self._next_log = now + _LOG_EVERY_S
            log.warning(message, *args)

    # ------------------------------------------------------------------ start-up

    def _start(self, consumer: Consumer) -> bool:
        """Wait for the topic, restore or not, assign. False when stopped first."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                marks_ms = int(self.wall_clock() * 1000)
                marks = self._marks(consumer)
                break
            except (KafkaException, DncBootstrapError) as exc:
                err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
                if err is not None and hasattr(err, "fatal") and err.fatal():
                    raise
                why = f"{err.name()}: {err.str()}" if err is not None and hasattr(err, "name") else str(exc)
                self.core.waiting(why)
                self._publish()
                self._warn("%s topic %s not available yet (%s); retrying", self.kind, self.topic, why)
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)
        else:
            return False
        positions = self._restore(marks)
        assign = self.core.begin(marks, self.clock(), positions, marks_ms)
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING if o == BEGINNING else o) for p, o in assign])
        log.info("%s: %d partition(s), %s", self.kind, len(marks),
                 "restored from a snapshot" if positions is not None else "read from the beginning")
        return True

    def _partitions(self, client: Consumer | AdminClient) -> list[int]:
        if isinstance(client, AdminClient):  # all topics: asking for one by name may create it
            metadata = client.list_topics(timeout=self._metadata_timeout_s)
        else:
            metadata = client.list_topics(self.topic, timeout=self._metadata_timeout_s)
        topic_md = metadata.topics.get(self.topic)
        if topic_md is None or topic_md.error is not None or not topic_md.partitions:
            why = "no partitions" if topic_md is None or topic_md.error is None else topic_md.error.name()
            raise DncBootstrapError(f"topic {self.topic} is not available: {why}", retriable=True)
        return sorted(topic_md.partitions)

    def _marks(self, consumer: Consumer, partitions: Iterable[int] | None = None) -> dict[int, tuple[int, int]]:
        """Watermarks of ``partitions`` (all of the topic's when None)."""
        wanted = self._partitions(consumer) if partitions is None else partitions
        return {p: self._watermark(consumer, p) for p in wanted}

    def _watermark(self, consumer: Consumer, partition: int) -> tuple[int, int]:
        """One partition's watermarks; a leader still being elected is waited for."""
        deadline = time.monotonic() + self._metadata_timeout_s
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=max(0.1, deadline - time.monotonic()))
                return low, high
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if not (isinstance(err, RdKafkaError) and is_retriable(err)) or time.monotonic() >= deadline \
                        or self.stop.is_set():
                    raise
                time.sleep(0.1)

    def _restore(self, marks: Mapping[int, tuple[int, int]]) -> dict[int, int] | None:
        """The offsets of a trusted snapshot (its table adopted), or None: read from 0."""
        if self.snapshots is None:
            self.rebuilt("disabled")
            return None
        return self.snapshots.restore(marks)

    # ------------------------------------------------------------------ following

    def _follow(self, consumer: Consumer) -> None:
        clock = self.clock
        next_meta = next_report = next_expiry = clock()
        next_snapshot = float("inf")
        loaded = self.core.ready
        if loaded:
            self.loaded()
            next_snapshot = clock()
        self._publish()
        while not self.stop.is_set():
            messages: list[Message] = consumer.consume(
                num_messages=self._batch_size, timeout=self._poll_timeout_s if loaded else 0.05)
            now, wall_ms = clock(), int(self.wall_clock() * 1000)
            self.last_poll = now
            decoded = self.core.on_batch(messages, now, wall_ms)
            if decoded.ops or (not loaded and self.core.ready):
                self.apply(decoded.ops, loaded or self.core.ready)
            self.on_decoded(decoded, loaded)
            for partition, err in decoded.errors:
                if err.fatal():
                    raise KafkaException(err)
                self._warn("%s consumer error on partition %d: %s", self.kind, partition, err.name())
            self._client_events(now)
            if not loaded and self.core.ready:
                loaded = True
                self.loaded()
                next_snapshot = now  # a first snapshot right after the bootstrap
            if now >= next_expiry:
                next_expiry = now + 1.0
                self.expire(wall_ms)
            for partition, offset in self.core.probes(now):
                try:
                    consumer.seek(TopicPartition(self.topic, partition, offset))
                except KafkaException:
                    pass  # not fetching yet: the next probe tries again
            if now >= next_meta:
                next_meta = now + self._metadata_interval_s
                self._new_partitions(consumer, now)
            if self.snapshots is not None and self.core.ready and now >= next_snapshot:
                if self.snapshots.write():
                    next_snapshot = now + self._snapshot_interval_s
            self._publish()
            if now >= next_report:
                next_report = now + 1.0
                self.report(consumer)

    def _client_events(self, now: float) -> None:
        while self._client_errors:
            err = self._client_errors.popleft()
            if err.fatal():
                raise KafkaException(err)
            name = str(err.name())
            if err.code() == _ALL_BROKERS_DOWN:
                self.core.on_error(-1, now, name)
            else:
                self.core.note(name)
            self._warn("%s consumer: %s", self.kind, name)

    def _new_partitions(self, consumer: Consumer, now: float) -> None:
        # The consumer's own metadata request waits behind its fetch long-poll (up to
        # fetch.wait.max.ms): a client of its own answers at once.
        if self._admin is None:
            self._admin = AdminClient(with_logger(admin_config(self._config)))
        try:
            partitions = self._partitions(self._admin)
            known = set(self.core.positions())
            marks = {p: (0, 0) for p in known if p in partitions}
            new = [p for p in partitions if p not in known]
            marks_ms = int(self.wall_clock() * 1000)
            if new:
                self._partitions(consumer)  # the consumer's metadata learns the new partitions
                marks.update(self._marks(consumer, new))
        except (KafkaException, DncBootstrapError) as exc:
            log.debug("%s metadata refresh failed: %s", self.kind, exc)
            return
        added = self.core.on_metadata(marks, now, marks_ms)
        if added:
            log.warning("%s topic %s: %d new partition(s), read from the beginning", self.kind, self.topic, len(added))
            consumer.incremental_assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p, _ in added])

    def _final_snapshot(self) -> None:
        if self.snapshots is not None and self.core.ready:
            self.snapshots.write()
