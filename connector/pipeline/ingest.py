"""The ingest driver: the I/O around :class:`connector.core.ingest.IngestCore` (stages 1-4, 8).

Every decision is the core's; this module moves records and effects between it and the
outside world, on the asyncio loop:

1. **feed** (in consume order): a consumed list's offsets are tracked in the core, and each
   record's ``(key, value)`` goes to the :class:`connector.pipeline.decode_lanes.DecodePool`
   lane of its key (a worker process). At most 4 lists per lane are in flight.
2. **process** (one list at a time, in feed order): the lanes' answers are put back **in
   consume order** (a list's records are spread over lanes by key, and the record key need
   not be the contact id), then handed to :meth:`IngestCore.receive`. A record the Schema
   Registry could not be asked about yet is not bad: the list waits and is decoded again
   with backoff (decoding pauses; nothing behind it overtakes it).
3. **effects**: dead letters and audit records are produced; each settles its records in the
   core once the broker acknowledged it. Batches wait in the core until the submit loop hands
   them to ``submit``, once the :class:`connector.pipeline.gate.SendGate` is open.
4. **ticks**: the window's age, flow control (pause and resume every assigned partition),
   gauges, and commits of what the core says is committable.

Before **every** submit attempt, delivery calls :meth:`IngestPipeline.check_at_send`: the gate
must be open, and every number of the batch is looked up in the DNC table once more; a
contact a list took meanwhile is audited (stage ``SEND``) instead of sent.

Failures: an unexpected exception in any stage stops the pipeline (:meth:`wait` raises it;
the app exits 1 and the log names the stage). A record whose dead letter or audit record the
broker refused for good is never settled, and stops the pipeline too: nothing is committed
past it. Retriable produce failures are the producer's to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from connector.config import Settings
from connector.core.ingest import Effects, IngestCore
from connector.core.models import TP, Batch
from connector.core.offsets import OffsetTracker
from connector.core.windowing import Window, WindowLimits
from connector.kafka.client_config import consumer_config
from connector.kafka.consumer import ConsumerThread
from connector.kafka.dnc_source import DncSource
from connector.kafka.exceptions import KafkaError
from connector.kafka.producer import AsyncProducer
from connector.ops.metrics import Metrics
from connector.pipeline.decode_feed import DecodeFeed
from connector.pipeline.decode_lanes import DecodePool
from connector.pipeline.decoding import DecodeSpec
from connector.pipeline.effects import EffectWriter, IngestStats, Retractions
from connector.pipeline.gate import SendGate

log = logging.getLogger(__name__)

Submit = Callable[[Batch], Awaitable[None]]


class IngestPipeline:
    """Consumes CRM events and hands compliant batches to ``submit``.

    Args:
        settings: the configuration (topics, window, kafka, phones, dnc).
        submit: awaited for every flushed batch, one at a time, in flush order; a submit that
            blocks is backpressure. It must eventually lead to :meth:`settle_batch` or
            :meth:`dead_letter_batch`. An exception from it stops the pipeline.
        producer: a started producer for audit, DLQ and DNC records (not closed here).
        dnc: the DNC materialiser (started here if needed, not closed here).
        gate: asked before a batch is handed to ``submit`` and before every attempt
            (:meth:`check_at_send`); by default open once the DNC table is bootstrapped.
        consumer_overrides: librdkafka settings laid over :func:`consumer_config`.
        clock: monotonic seconds for the window (tests inject their own).
        commit_interval_s: how often committable offsets are committed.
        tick_s: how often the window's age and the flow control are checked.
        max_queued_batches: flushed batches waiting for ``submit`` before the consumer pauses.
        decode_pool: where records are decoded (``ingest.workers`` processes by default).
        stats_cb: librdkafka's statistics JSON of the consumer (on the consumer thread).
        retract: CXone-side opt-outs (:class:`connector.pipeline.dnc_group.DncGroupPusher`).
        metrics: the metric families (a private registry when ``None``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        submit: Submit,
        producer: AsyncProducer,
        dnc: DncSource,
        gate: SendGate | None = None,
        consumer_overrides: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        commit_interval_s: float = 1.0,
        tick_s: float = 0.05,
        max_queued_batches: int = 2,
        decode_pool: DecodePool | None = None,
        stats_cb: Callable[[str], None] | None = None,
        retract: Retractions | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self._metrics = metrics if metrics is not None else Metrics()
        self._submit_fn = submit
        self._retract = retract
        self.producer = producer
        self.dnc = dnc
        self.gate = gate or SendGate([lambda: (dnc.ready, "the DNC table is not bootstrapped yet")])
        self.decode_pool = decode_pool or DecodePool(_decode_spec(settings), settings.ingest.workers)
        w = settings.window
        self.core = IngestCore(WindowLimits(w.max_items, w.max_bytes, w.max_age_s), clock=clock,
                               lookup_many=dnc.lookup_many, max_unsettled=settings.kafka.max_unsettled,
                               max_queued_batches=max_queued_batches, release_on_flush=retract is not None,
                               refuse_unknown_time_zone=settings.calling_hours.unknown == "refuse")
        self.stats = IngestStats()
        self.writer = EffectWriter(settings.topics, settings.dnc, producer, self.core, metrics=self._metrics,
                                   stats=self.stats, retract=retract, on_failure=self._fail)
        # the window age of the previous output's flush (the batches' window-age metric)
        self._window_deadline: float | None = None
        config = consumer_config(settings)
        config.update(consumer_overrides or {})
        self.consumer = ConsumerThread(
            config, [settings.topics.contacts], self,
            batch_size=settings.kafka.consume_batch_size, poll_timeout_s=settings.kafka.poll_timeout_s,
            stats_cb=stats_cb, statistics_interval_ms=settings.kafka.statistics_interval_ms,
        )
        self._commit_interval_s = commit_interval_s
        self._tick_s = tick_s
        self._queue_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consume_task: asyncio.Task[None] | None = None
        self.feeder = DecodeFeed(self.consumer, self.core, self.decode_pool, apply=self._apply, flow=self._flow,
                                 metrics=self._metrics, stats=self.stats, poll_s=tick_s * 4)
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._stopping = False
        self._last_commit = 0.0

    # ------------------------------------------------------------------ state

    @property
    def failure(self) -> BaseException | None:
        """What stopped the pipeline, if it failed."""
        return self._failure

    @property
    def assigned(self) -> frozenset[TP]:
        """Partitions this instance currently owns (as the loop knows them)."""
        return self.core.assigned

    @property
    def window(self) -> Window:
        """The core's window (tests, benchmarks)."""
        return self.core.window

    @property
    def tracker(self) -> OffsetTracker:
        """The core's offset tracker (tests, benchmarks)."""
        return self.core.tracker

    @property
    def in_flight(self) -> int:
        """Consumed lists fed to the decode pool and not yet windowed."""
        return self.feeder.in_flight

    @property
    def registry_unavailable(self) -> bool:
        """True while decoding waits for the Schema Registry (for readiness)."""
        return self.feeder.registry_unavailable

    @property
    def paused(self) -> bool:
        """True while the pipeline holds the consumer paused for backpressure."""
        return self.core.paused

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the DNC source and the background tasks; returns at once.

        Consumption begins once the DNC table is bootstrapped (the gate decides when batches
        go out; until then nothing is consumed, so nothing waits in memory).
        """
        await self.dnc.start()
        self._tasks = [
            asyncio.create_task(self._guard("begin", self._begin()), name="ingest-begin"),
            asyncio.create_task(self._guard("submit", self._submit_loop()), name="ingest-submit"),
        ]

    async def wait(self) -> None:
        """Return when the pipeline failed (raising its error) or was stopped.

        Raises:
            BaseException: whatever stopped the pipeline.
        """
        await self._failed.wait()
        if self._failure is not None:
            raise self._failure

    async def stop(self, deadline_s: float | None = None) -> None:
        """Stop gracefully: stop consuming, flush the window, wait for settlement, commit, close.

        Args:
            deadline_s: how long to wait for the flushed records to settle (defaults to
                ``shutdown_deadline_s``). Unsettled records stay uncommitted.
        """
        if self._stopping:
            return
        self._stopping = True
        deadline = deadline_s if deadline_s is not None else self.settings.shutdown_deadline_s
        if self._consume_task is not None:
            _detach(self.consumer.pause())  # what still arrives is neither processed nor committed
            self._consume_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consume_task
            with contextlib.suppress(TimeoutError):  # lists already fed are tracked: window them
                async with asyncio.timeout(deadline):
                    while self._failure is None and self.in_flight:
                        await asyncio.sleep(0.01)
        if self._failure is None:
            self._apply(self.core.flush_all("shutdown"))
            try:
                async with asyncio.timeout(deadline):
                    while self._failure is None and (self.core.unsettled or self.core.queued):
                        await asyncio.sleep(0.02)
            except TimeoutError:
                log.warning("shutdown: %d record(s) still unsettled after %.1fs; they will be read again",
                            self.core.unsettled, deadline)
            await self._commit()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await self.consumer.close()
        except KafkaError as exc:
            log.error("closing the consumer failed: %s", exc)
        self._failed.set()

    async def _guard(self, stage: str, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc, stage)

    def _fail(self, exc: BaseException, stage: str) -> None:
        if self._failure is None:
            self._failure = exc
            log.error("ingest stage %s failed: %s: %s", stage, type(exc).__name__, exc,
                      exc_info=(type(exc), exc, exc.__traceback__))
        self._failed.set()

    async def _begin(self) -> None:
        await self.gate.wait_open()
        if self._stopping:
            return
        await self.decode_pool.start()
        if self._stopping:
            return
        await self.consumer.start()
        self._consume_task = asyncio.create_task(self._guard("consume", self.feeder.consume_loop()),
                                                 name="ingest-consume")
        self._tasks.append(asyncio.create_task(self._guard("process", self.feeder.process_loop()),
                                               name="ingest-process"))
        self._tasks.append(asyncio.create_task(self._guard("tick", self._tick_loop()), name="ingest-tick"))

    # ------------------------------------------------------------- rebalance hooks

    def on_assigned(self, tps: list[TP]) -> None:
        """Consumer-thread hook (on the loop): partitions added."""
        self.core.assign(tps)

    async def on_revoked(self, tps: list[TP]) -> Mapping[TP, int]:
        """Consumer-thread hook (on the loop): drop the partitions' state.

        Returns:
            The committable offsets of ``tps``, for the consumer thread to commit before the
            revoke completes.
        """
        committable, effects = self.core.revoke(tps)
        self._apply(effects)
        return committable

    def on_lost(self, tps: list[TP]) -> None:
        """Consumer-thread hook (on the loop): partitions lost; drop, commit nothing."""
        self._apply(self.core.lose(tps))

    # ------------------------------------------------------------ effects

    def _apply(self, effects: Effects) -> None:
        """Carry out one core call's effects."""
        if effects.decoded:
            self.stats.decoded += effects.decoded
            self._metrics.events_decoded.inc(effects.decoded)
            self._metrics.count_time_zone_sources(effects.time_zone_sources)
        self.writer.write(effects)
        if effects.batches:
            self._observe_flushes(effects.batches)
            self._queue_changed.set()

    def _observe_flushes(self, batches: Sequence[Batch]) -> None:
        flushed_deadline = self._window_deadline
        self._window_deadline = self.core.window.deadline()
        max_items, max_age = self.settings.window.max_items, self.settings.window.max_age_s
        for batch in batches:
            self.stats.batches += 1
            # a second batch in one output is a window that started within this call
            age = batch.created_at - (flushed_deadline - max_age) if flushed_deadline is not None else 0.0
            flushed_deadline = None
            self._metrics.observe_flush(len(batch.contacts), max_items, max(0.0, age), batch.flush_reason)
            log.debug("batch %s: %d contact(s), %d record(s), reason %s", batch.batch_id,
                      len(batch.contacts), len(batch.covered), batch.flush_reason)

    # ------------------------------------------------------------------ delivery

    async def _submit_loop(self) -> None:
        while True:
            batch = self.core.take_batch()
            if batch is None:
                self._queue_changed.clear()
                await self._queue_changed.wait()
                continue
            try:
                await self.gate.wait_open()
                await self._submit_fn(batch)
            finally:
                self.core.handed_over()
            self._flow()

    async def check_at_send(self, batch: Batch) -> Batch | None:
        """The send-time DNC check (:data:`connector.cxone.client.SendCheck`), asked before
        every HTTP attempt of every submission.

        Waits until the gate is open (the DNC table current, every list fresh enough), then
        looks every number up again. Contacts a DNC list took since the flush are audited
        (stage ``SEND``), the audit records acknowledged, and left out; their records settle
        with the batch.

        Returns:
            The batch to send (itself when nothing changed), or None when no contact is left.

        Raises:
            connector.kafka.exceptions.ProduceError: an audit record was refused for good.
        """
        await self.gate.wait_open()
        blocked = self.dnc.lookup_many([contact.phone_e164 for contact in batch.contacts])
        pruned, audits = self.core.prune(batch, blocked)
        if audits:
            log.warning("batch %s: %d contact(s) joined a DNC list before a submit attempt; not sent",
                        batch.batch_id, len(audits))
            await asyncio.gather(*self.writer.audit(audits))
        return pruned

    async def settle_batch(self, batch: Batch) -> None:
        """The batch's job COMPLETED and its job event was acknowledged: settle every covered
        record (records of partitions revoked meanwhile are ignored)."""
        self.core.settle_batch(batch)
        self._flow()

    async def dead_letter_batch(self, batch: Batch, *, stage: str, error_class: str, message: str) -> None:
        """Send each contact's original record to the DLQ, wait for the acks, then settle every
        covered record (superseded records are settled with their winner, not re-sent).

        Raises:
            connector.kafka.exceptions.ProduceError: a dead letter was refused for good; the
                batch stays unsettled.
        """
        await self.writer.dead_letter_batch(batch, stage=stage, error_class=error_class, message=message)
        self.core.settle_batch(batch)
        self._flow()

    # ------------------------------------------------------------- ticker, commits

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self._apply(self.core.poll())
            self._flow()
            self._metrics.unsettled.set(self.core.unsettled)
            self._metrics.paused_partitions.set(len(self.core.assigned) if self.core.paused else 0)
            now = time.monotonic()
            if now - self._last_commit >= self._commit_interval_s:
                self._last_commit = now
                await self._commit()

    async def _commit(self) -> None:
        offsets = self.core.committable()
        if not offsets:
            return
        started = time.monotonic()
        try:
            done = await self.consumer.commit(offsets)
        except KafkaError as exc:
            if exc.fatal:  # the consumer is unusable: stop (nothing is lost, it was not committed)
                raise
            # a rebalance race or a broker away: the offsets are committed at the next interval
            log.warning("commit failed (%s); retrying at the next interval", exc)
            return
        self._metrics.commit_duration.observe(time.monotonic() - started)
        self.core.committed(done)
        self.stats.commits += 1

    def _flow(self) -> None:
        if self._stopping or self._consume_task is None:
            return
        decision = self.core.flow()
        if decision is True:
            self.feeder.flowing.clear()
            _detach(self.consumer.pause())
            log.info("backpressure: pausing (%d unsettled, %d batch(es) queued)",
                     self.core.unsettled, self.core.queued)
        elif decision is False:
            self.feeder.flowing.set()
            _detach(self.consumer.resume())
            log.info("backpressure: resuming (%d unsettled)", self.core.unsettled)



def _detach(fut: asyncio.Future[Any]) -> None:
    """Let a consumer request complete on its own; log (rather than leak) its failure."""

    def done(f: asyncio.Future[Any]) -> None:
        if not f.cancelled() and f.exception() is not None:
            log.warning("consumer request failed: %s", f.exception())

    fut.add_done_callback(done)


def _decode_spec(settings: Settings) -> DecodeSpec:
    return DecodeSpec(wire_format=settings.kafka.value_format, schema_registry_url=settings.kafka.schema_registry_url,
                      default_region=settings.phones.default_region, cache_size=settings.phones.cache_size,
                      default_time_zone=settings.calling_hours.default_time_zone,
                      phone_fast_path=settings.phones.fast_path)
