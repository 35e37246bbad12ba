"""Follows the compacted ``dnc.lists`` topic: each DNC list's last sync, for the freshness gate.

``cxone-connector dnc sync`` writes one ``DncListRefresh`` per list (key = list name) once
its entries are acknowledged. Every instance reads them here, like a GlobalKTable: one thread
owns its own ``Consumer``, assigned (no group, nothing committed) to every partition of the
topic from the beginning. It is *ready* once every partition's position reached the high
watermark taken at start-up (:mod:`connector.kafka.topic_scan`), and then keeps following,
so a new sync is seen within one poll.

The thread decodes each record and hands the batch to the asyncio loop with
``call_soon_threadsafe``; the records, readiness and :meth:`DncRefreshReader.status` live on
the loop. A tombstone deletes a list's record; a record that cannot be read (not
``DncListRefresh``, or a value naming another list than its key) makes that list
*unreadable*, which counts as no record: a list with a limit is then stale (fail closed).

A broker outage is waited out, never a crash: metadata that cannot be fetched is retried
every ``retry_interval_s``; once following, the thread probes the topic's metadata every
``probe_interval_s`` (a broker round trip) and librdkafka's own errors are watched. While the
outage lasts longer than ``max_outage_s``, :meth:`DncRefreshReader.status` is not ok and says
why; the known records are kept and apply again as soon as the broker answers.

:meth:`DncRefreshReader.status` evaluates the records against the policies
(:func:`connector.core.dnc_freshness.evaluate`) at the ``now`` it is given, and the
``cxone_connector_dnc_list_age_seconds`` gauge (:class:`connector.ops.metrics.DncListAgeCollector`)
is fed from the same records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message

from connector.config import Settings
from connector.core.dnc_freshness import FreshnessReport, ListPolicy, ListRefresh, evaluate, refresh_from_record
from connector.core.dnc_keys import valid_list_name
from connector.errors import SerdeError
from connector.kafka.client_config import dnc_consumer_config, with_logger
from connector.kafka.exceptions import KafkaError
from connector.kafka.loop_thread import LoopThread
from connector.kafka.topic_scan import (
    CatchUp,
    TopicScanError,
    assign_from_beginning,
    scan_config,
    split_batch,
    start_up_marks,
)
from connector.ops.metrics import Metrics
from connector.serde.codec import AvroCodec

log = logging.getLogger(__name__)

#: ``(list name, refresh record or None for a tombstone, readable)``
Update = tuple[str, ListRefresh | None, bool]


class DncRefreshError(KafkaError):
    """The refresh reader could not start, failed, or is not ready yet."""


class DncRefreshReader:
    """Reads every DNC list's refresh record and says whether submission may go on.

    Args:
        config: librdkafka consumer settings (``bootstrap.servers``, TLS, SASL, ...; for example
            :func:`connector.kafka.client_config.dnc_consumer_config`). Partitions are assigned,
            never committed; a ``group.id`` is added when missing.
        topic: the refresh topic (``topics.dnc_lists``).
        policies: the configured lists (``dnc.lists``) by name.
        metrics: where ``cxone_connector_dnc_list_age_seconds`` is exported (a private
            registry when None).
        poll_timeout_s: how long one ``consume()`` call may block.
        metadata_timeout_s: deadline of one metadata or watermark request.
        probe_interval_s: how often the broker is asked for the topic's metadata once following.
        retry_interval_s: wait between two attempts to read the topic's metadata at start-up.
        max_outage_s: how long the broker may be unreachable before :meth:`status` is not ok.
        monotonic: the monotonic clock (outage durations), injectable for tests.
    """

    def __init__(
        self,
        config: Mapping[str, str],
        topic: str,
        policies: Mapping[str, ListPolicy],
        *,
        metrics: Metrics | None = None,
        poll_timeout_s: float = 0.5,
        metadata_timeout_s: float = 10.0,
        probe_interval_s: float = 5.0,
        retry_interval_s: float = 2.0,
        max_outage_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = scan_config(config, "cxone-connector.dnc-refreshes")
        self._config["error_cb"] = self._on_client_error
        self.topic = topic
        self.policies: Mapping[str, ListPolicy] = MappingProxyType(dict(policies))
        self._metrics = metrics if metrics is not None else Metrics()
        self._ages = self._metrics.dnc_list_ages
        self._ages.declare(sorted(self.policies))
        self._poll_timeout_s = poll_timeout_s
        self._metadata_timeout_s = metadata_timeout_s
        self._probe_interval_s = probe_interval_s
        self._retry_interval_s = retry_interval_s
        self._max_outage_s = max_outage_s
        self._monotonic = monotonic
        self._codec = AvroCodec("DncListRefresh")
        self._worker = LoopThread("dnc-refreshes", self._run)
        self._stop = self._worker.stop
        # loop side
        self._records: dict[str, ListRefresh] = {}
        self._unreadable: set[str] = set()
        # thread side (plain stores; the loop reads them as snapshots)
        self._ready_flag = threading.Event()
        self._failure: DncRefreshError | None = None
        self._outage_since: float | None = None
        self._outage_reason = ""

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics: Metrics | None = None) -> DncRefreshReader:
        """The reader the connector runs: ``topics.dnc_lists``, the ``dnc.lists`` policies, the
        DNC reader's consumer settings (:func:`connector.kafka.client_config.dnc_consumer_config`)
        and ``dnc.max_stall_s`` as the outage allowance."""
        policies = {name: ListPolicy(p.max_age_days, p.enforce) for name, p in settings.dnc.lists.items()}
        config = dict(dnc_consumer_config(settings))
        config["group.id"] = f"{settings.kafka.group_id}.dnc-refreshes"
        return cls(config, settings.topics.dnc_lists, policies, metrics=metrics,
                   max_outage_s=settings.dnc.max_stall_s)

    # ------------------------------------------------------------------ loop side

    @property
    def ready(self) -> bool:
        """True once every record up to the start-up watermarks was read and handed over."""
        return self._ready_flag.is_set()

    @property
    def failure(self) -> DncRefreshError | None:
        """The error that stopped the thread for good (a bad configuration), if any."""
        return self._failure

    @property
    def records(self) -> Mapping[str, ListRefresh]:
        """The latest readable refresh record per list (a read-only snapshot; loop side)."""
        return MappingProxyType(dict(self._records))

    @property
    def unreadable(self) -> frozenset[str]:
        """Lists whose latest record could not be read."""
        return frozenset(self._unreadable)

    def report(self, now: float) -> FreshnessReport:
        """Every list's freshness at Unix time ``now``, from the records read so far."""
        return evaluate(self._records, self.policies, now, self._unreadable)

    def status(self, now: float) -> tuple[bool, str]:
        """Whether submission may go on at Unix time ``now``, and why not.

        Not ok while the thread failed, before the records are read up to the start-up
        watermarks, while the broker has been unreachable for more than ``max_outage_s``, or
        while a list with a limit and ``enforce`` is stale. The reason names lists and ages,
        never numbers.

        Returns:
            ``(ok, reason)``; the reason is ``"ok"``, or also lists stale lists that are not
            enforced.
        """
        if self._failure is not None:
            return False, f"DNC refresh reader stopped: {self._failure}"
        outage = self._outage()
        if not self.ready:
            why = f" ({outage[1]})" if outage is not None else ""
            return False, f"DNC list refresh records not read yet from {self.topic}{why}"
        if outage is not None and outage[0] >= self._max_outage_s:
            return False, f"DNC refresh topic {self.topic} unreachable for {outage[0]:.0f}s: {outage[1]}"
        report = self.report(now)
        return report.ok, report.reason

    def _outage(self) -> tuple[float, str] | None:
        since = self._outage_since
        if since is None:
            return None
        return max(0.0, self._monotonic() - since), self._outage_reason

    async def start(self) -> None:
        """Start the reader thread; returns at once (see :meth:`wait_ready`)."""
        self._worker.start()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the records up to the start-up watermarks are read.

        Raises:
            DncRefreshError: not started, the thread failed (not retriable), or ``timeout``
                passed first (retriable).
        """
        if not self._worker.started:
            raise DncRefreshError("the DNC refresh reader is not started", retriable=False)
        if await self._worker.wait_ready(timeout):
            return
        if self._failure is not None:
            raise self._failure
        raise DncRefreshError(f"DNC refresh records not read after {timeout}s", retriable=True)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop following the topic and close the consumer (waits up to ``timeout``)."""
        await self._worker.close(timeout)

    def _apply(self, updates: list[Update], ready: bool) -> None:
        """Loop side: take a decoded batch, then (once) the readiness it brought."""
        for name, refresh, readable in updates:
            if refresh is not None:
                self._records[name] = refresh
                self._unreadable.discard(name)
                self._ages.set_as_of(name, refresh.as_of_s)
                continue
            self._records.pop(name, None)
            if readable:  # a tombstone: the record was deleted
                self._unreadable.discard(name)
                self._ages.forget(name)
            else:
                self._unreadable.add(name)
                self._ages.set_as_of(name, None)
        if ready:
            self._ready_flag.set()
            self._worker.set_ready()

    # ---------------------------------------------------------------- thread side

    def _on_client_error(self, err: Any) -> None:
        if err.fatal():
            self._failure = DncRefreshError(f"fatal consumer error: {err.name()}: {err.str()}", retriable=False,
                                            code=str(err.name()), fatal=True)
            self._stop.set()
        else:
            self._set_outage(f"{err.name()}: {err.str()}")

    def _set_outage(self, reason: str) -> None:
        if self._outage_since is None:
            self._outage_since = self._monotonic()
            log.warning("DNC refresh topic %s: %s", self.topic, reason)
        self._outage_reason = reason

    def _clear_outage(self) -> None:
        if self._outage_since is not None:
            log.info("DNC refresh topic %s reachable again", self.topic)
        self._outage_since = None
        self._outage_reason = ""

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = Consumer(with_logger(self._config))
            self._follow(consumer)
        except (KafkaException, ValueError, TypeError) as exc:
            self._failure = DncRefreshError(f"DNC refresh consumer failed: {exc}", retriable=False)
            log.error("%s", self._failure)
        except Exception as exc:
            self._failure = DncRefreshError(f"DNC refresh reader crashed: {exc!r}", retriable=False)
            log.exception("DNC refresh reader crashed")
        finally:
            if consumer is not None:
                try:
                    consumer.close()
                except Exception:
                    log.exception("closing the DNC refresh consumer failed")

    def _start_up(self, consumer: Consumer) -> CatchUp | None:
        """Assign every partition from the beginning; None (after a pause) while the topic's
        metadata cannot be read."""
        try:
            marks = start_up_marks(consumer, self.topic, self._metadata_timeout_s)
        except TopicScanError as exc:
            self._set_outage(str(exc))
            self._stop.wait(self._retry_interval_s)
            return None
        self._clear_outage()
        assign_from_beginning(consumer, self.topic, marks)
        log.info("reading DNC list refresh records from %s (%d partition(s))", self.topic, len(marks))
        return CatchUp(self.topic, marks)

    def _follow(self, consumer: Consumer) -> None:
        catch_up: CatchUp | None = None
        handed_ready = False
        next_probe = 0.0
        while not self._stop.is_set():
            if catch_up is None:
                catch_up = self._start_up(consumer)
                if catch_up is None:
                    continue
                next_probe = self._monotonic() + self._probe_interval_s
            messages = consumer.consume(num_messages=500, timeout=self._poll_timeout_s)
            good, eof, errors = split_batch(messages)
            if errors:
                self._set_outage(f"{errors[-1].name()}: {errors[-1].str()}")
            updates = [u for u in map(self._decode, good) if u is not None]
            became_ready = not handed_ready and catch_up.update(consumer, eof)
            if updates or became_ready:
                # readiness travels with the batch that completed it: the loop never sees
                # ready before the records
                self._worker.call(self._apply, updates, became_ready)
                handed_ready = handed_ready or became_ready
            if self._monotonic() >= next_probe:
                next_probe = self._monotonic() + self._probe_interval_s
                self._probe(consumer)

    def _probe(self, consumer: Consumer) -> None:
        try:
            metadata = consumer.list_topics(self.topic, timeout=self._metadata_timeout_s)
        except KafkaException as exc:
            self._set_outage(f"metadata request failed: {exc}")
            return
        topic_md = metadata.topics.get(self.topic)
        if topic_md is None or topic_md.error is not None:
            self._set_outage(f"topic {self.topic} is not available")
        else:
            self._clear_outage()

    def _decode(self, msg: Message) -> Update | None:
        """The record as an update of its list; None for a key that names no valid list."""
        key = msg.key()
        try:
            name = key.decode("utf-8") if key is not None else ""
        except UnicodeDecodeError:
            name = ""
        if not valid_list_name(name):
            log.warning("DNC refresh record %s[%s]@%s has no valid list name as its key; skipped",
                        self.topic, msg.partition(), msg.offset())
            return None
        value = msg.value()
        if value is None:
            return name, None, True
        try:
            refresh = refresh_from_record(self._codec.decode(value))
        except (SerdeError, ValueError) as exc:
            log.error("refresh record of DNC list %r is unreadable (%s): the list counts as never synced",
                      name, exc)
            return name, None, False
        if refresh.list_name != name:
            log.error("refresh record of DNC list %r names list %r: unreadable", name, refresh.list_name)
            return name, None, False
        return name, refresh, True
