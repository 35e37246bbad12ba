"""The ingest pipeline: CRM change events to compliant, windowed batches (design stages 1-4, 8).

Everything here runs on the asyncio loop except the Kafka threads it drives (the consumer
thread and the DNC materialiser) and the decode workers. Per consumed list of records:

1. **feed** (in consume order): each record of an assigned partition is *tracked* in the
   :class:`connector.core.offsets.OffsetTracker`, and its ``(key, value)`` goes to the
   :class:`connector.pipeline.decode_lanes.DecodePool` lane of its key, where it is decoded,
   validated and normalised (:mod:`connector.pipeline.decoding`; a lane is a worker process, so the
   CPU work runs on every core). At most 4 lists per lane are in flight.
2. **process** (in the same order, one list at a time): failures go to the DLQ (stage
   ``decode``, ``validate`` or ``normalise``, with the reason); the rest become
   :class:`connector.core.models.ContactEvent` and enter the window
   (:meth:`connector.core.windowing.Window.add_many`: DNC check on arrival, last write per
   contact, opt-outs, flush on size / bytes / age, DNC check again at flush).

What the window hands back is acted on at once: batches are queued for the injected
``submit``; audit outcomes are written to the audit topic (``SuppressedContact``; with
``dnc.publish_opt_outs`` an opt-out also writes a ``DncEntry`` to the DNC topic); rejects
are dead-lettered. A record is settled in the :class:`connector.core.offsets.OffsetTracker` only
in the producer's delivery callback of the record that settles it; a batch's records are
settled by the delivery side (:meth:`IngestPipeline.settle_batch` /
:meth:`IngestPipeline.dead_letter_batch`).

Audit reasons: the window's ``CANCELLED_BY_OPT_OUT`` (an opt-in cancelled by a later
opt-out) is written as ``OPTED_OUT``; ``SUPERSEDED`` (an opt-in replaced by a later,
DNC-blocked write of the same contact) takes the reason and list of that later write.

A ticker polls the window for its age, commits ``tracker.committable()`` through the consumer
thread every ``commit_interval_s``, and applies backpressure: every assigned partition is
paused while the tracker is over its limit or ``max_queued_batches`` batches wait for
``submit`` (a blocking submit), and resumed once under the tracker's resume mark and the
queue has room. While paused, records already handed over by the consumer thread wait
too, so the unsettled count overshoots the limit by at most one consumed batch.

Nothing is consumed, so nothing submitted, before the DNC bootstrap completed; the submit
task checks readiness again before each batch.

Records are tracked when they are fed, so those still in a worker count as unsettled (and
against ``max_unsettled``), and a list's results are processed strictly in feed order: no
later record can settle, and be committed, past one still being decoded. On stop, the lists
still in flight are windowed (within the shutdown deadline) before the last flush; what is
left unprocessed stays unsettled and uncommitted.

Rebalances: on revoke, the revoked partitions' buffered records leave the window, their
batches not yet handed to ``submit`` lose those records, and their tracker state is
forgotten after what is committable for them was returned to the consumer thread (which
commits it before the revoke completes). Results of a revoked partition that come back from
a worker afterwards are dropped (a revoke generation tells them apart from records of a
later assignment of the same partition).

Failures: a delivery failure of an audit, DLQ or DNC record, or an exception from
``submit``, stops the pipeline (:attr:`IngestPipeline.failure`, :meth:`IngestPipeline.wait`):
the records stay unsettled and uncommitted, so a restart reads them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Message

from connector.config import Settings
from connector.core.models import TP, Batch, ContactEvent, SourceRef
from connector.core.offsets import OffsetTracker
from connector.core.windowing import (
    REASON_CANCELLED,
    REASON_DNC,
    REASON_OPTED_OUT,
    REASON_SUPERSEDED,
    STAGE_FLUSH,
    AuditOutcome,
    Rejected,
    Window,
    WindowLimits,
    WindowOutput,
)
from connector.errors import SerdeError
from connector.kafka.client_config import consumer_config
from connector.kafka.consumer import ConsumerThread
from connector.kafka.dlq_headers import plain_headers
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.dnc_source import DncSource
from connector.kafka.exceptions import KafkaError
from connector.kafka.producer import AsyncProducer, Record
from connector.ops.metrics import DLQ_STAGES, INVALID_REASONS, Metrics
from connector.pipeline.decode_lanes import DecodePool
from connector.pipeline.decoding import OK, Decoded, DecodeSpec
from connector.serde.codec import AvroCodec

log = logging.getLogger(__name__)

Submit = Callable[[Batch], Awaitable[None]]


class Retractions(Protocol):
    """Opt-outs carried to CXone (``connector.pipeline.dnc_group.DncGroupPusher``)."""

    def push(self, e164: str) -> asyncio.Future[None]:
        """Block ``e164`` on the CXone side; resolves once acknowledged."""
        ...

    def release(self, numbers: Iterable[str]) -> int:
        """Unblock ``numbers`` this instance blocked (they opted in again)."""
        ...

STAGE_WINDOW = "window"
_UNSEEN: Any = object()
#: Consumed lists in flight (fed, not yet windowed) per decode lane.
_LISTS_PER_LANE = 4


@dataclass
class IngestStats:
    """Counters since start (the metrics module reads what it needs from here)."""

    consumed: int = 0
    decoded: int = 0
    dead_lettered: int = 0
    audited: int = 0
    opt_outs_published: int = 0
    batches: int = 0
    dropped_on_revoke: int = 0
    commits: int = 0


class IngestPipeline:
    """Consumes CRM events and hands compliant batches to ``submit``.

    Args:
        settings: the configuration (topics, window, kafka, phones, dnc).
        submit: awaited for every flushed batch, one at a time, in flush order; a submit that
            blocks is backpressure. It must eventually lead to :meth:`settle_batch` or
            :meth:`dead_letter_batch`. An exception from it stops the pipeline.
        producer: a started producer for audit, DLQ and DNC records (not closed here).
        dnc: the DNC materialiser (started here if needed, not closed here).
        consumer_overrides: librdkafka settings laid over :func:`consumer_config`.
        clock: monotonic seconds for the window (tests inject their own).
        commit_interval_s: how often committable offsets are committed.
        tick_s: how often the window's age and the backpressure are checked.
        max_queued_batches: flushed batches waiting for ``submit`` before the consumer pauses.
        decode_pool: where records are decoded and normalised (built from settings by
            default: ``ingest.workers`` worker processes).
        stats_cb: receives librdkafka's statistics JSON (on the consumer thread) every
            ``kafka.statistics_interval_ms``.
        retract: CXone-side opt-outs (:class:`connector.pipeline.dnc_group.DncGroupPusher`): every
            CRM opt-out's number is pushed and the opt-out settles once that is acknowledged;
            the numbers of every flushed batch are released first (opted in again).
            ``None``: opt-outs only cancel what is still pending.
        metrics: the events, batches, commit, paused and unsettled families (a private
            registry when ``None``). Counted per consumed list, not per record, where possible.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        submit: Submit,
        producer: AsyncProducer,
        dnc: DncSource,
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
        self._invalid = {r: self._metrics.invalid.labels(reason=r) for r in INVALID_REASONS}
        self._dead_lettered = {s: self._metrics.dead_lettered.labels(stage=s) for s in DLQ_STAGES}
        # The window's age deadline after the last window call: a flush's window age.
        self._window_deadline: float | None = None
        self._submit_fn = submit
        self._retract = retract
        self.producer = producer
        self.dnc = dnc
        self._dead_letters = DeadLetterWriter(producer, settings.topics.dlq)
        self._audit_codec = AvroCodec("SuppressedContact")
        self._dnc_codec = AvroCodec("DncEntry")
        self.decode_pool = decode_pool or DecodePool(_decode_spec(settings), settings.ingest.workers)
        self.window = Window(
            WindowLimits(settings.window.max_items, settings.window.max_bytes, settings.window.max_age_s),
            clock=clock, lookup_many=dnc.lookup_many,
        )
        self.tracker = OffsetTracker(settings.kafka.max_unsettled)
        config = consumer_config(settings)
        config.update(consumer_overrides or {})
        self.consumer = ConsumerThread(
            config, [settings.topics.contacts], self,
            batch_size=settings.kafka.consume_batch_size, poll_timeout_s=settings.kafka.poll_timeout_s,
            stats_cb=stats_cb, statistics_interval_ms=settings.kafka.statistics_interval_ms,
        )
        self._commit_interval_s = commit_interval_s
        self._tick_s = tick_s
        self._max_queued = max(1, max_queued_batches)
        self.stats = IngestStats()

        self._assigned: set[TP] = set()
        self._queue: list[Batch] = []
        self._queue_changed = asyncio.Event()
        self._submitting: Batch | None = None
        self._paused = False
        self._flowing = asyncio.Event()  # clear while paused: queued records wait too
        self._flowing.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._consume_task: asyncio.Task[None] | None = None
        # Consumed lists fed to the decode pool, in feed order; a slot is taken before a list is
        # fetched from the consumer thread, so feeding never waits (nor can a cancelled feeder
        # lose a list it already tracked).
        self._in_flight: asyncio.Queue[_Chunk] = asyncio.Queue()
        self._slots = asyncio.Semaphore(_LISTS_PER_LANE * self.decode_pool.lanes)
        self._processing = 0  # 1 while the processor holds a list taken off the queue
        # Revoke generation: bumped by every revoke; a partition remembers the last one that hit it.
        self._generation = 0
        self._revoked_in: dict[TP, int] = {}
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._stopping = False
        self._last_commit = 0.0

    # ------------------------------------------------------------------ lifecycle

    @property
    def failure(self) -> BaseException | None:
        """What stopped the pipeline, if it failed."""
        return self._failure

    @property
    def assigned(self) -> frozenset[TP]:
        """Partitions this instance currently owns (as the loop knows them)."""
        return frozenset(self._assigned)

    @property
    def in_flight(self) -> int:
        """Consumed lists fed to the decode pool and not yet windowed."""
        return self._in_flight.qsize() + self._processing

    @property
    def paused(self) -> bool:
        """True while the pipeline holds the consumer paused for backpressure."""
        return self._paused

    async def start(self) -> None:
        """Start the DNC source and the background tasks; returns at once.

        Consumption begins only once the DNC bootstrap completed (within
        ``dnc.bootstrap_timeout_s``; otherwise the pipeline fails with
        :class:`connector.kafka.exceptions.DncBootstrapError`).
        """
        await self.dnc.start()
        self._tasks = [
            asyncio.create_task(self._guard(self._begin()), name="ingest-begin"),
            asyncio.create_task(self._guard(self._submit_loop()), name="ingest-submit"),
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
            # Lists already fed are tracked: let the processor window them before the last flush.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline):
                    while self._failure is None and self.in_flight:
                        await asyncio.sleep(0.01)
        if self._failure is None:
            self._handle(self.window.flush_all("shutdown"))
            try:
                async with asyncio.timeout(deadline):
                    while self._failure is None and (
                        self.tracker.unsettled or self._queue or self._submitting
                    ):
                        await asyncio.sleep(0.02)
            except TimeoutError:
                log.warning("shutdown: %d record(s) still unsettled after %.1fs; they will be read again",
                            self.tracker.unsettled, deadline)
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

    async def _guard(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            log.error("ingest pipeline failed: %r", exc)
        self._failed.set()

    async def _begin(self) -> None:
        await self.dnc.wait_ready(self.settings.dnc.bootstrap_timeout_s)
        if self._stopping:
            return
        await self.decode_pool.start()
        if self._stopping:
            return
        await self.consumer.start()
        self._consume_task = asyncio.create_task(self._guard(self._consume_loop()), name="ingest-consume")
        self._tasks.append(asyncio.create_task(self._guard(self._process_loop()), name="ingest-process"))
        self._tasks.append(asyncio.create_task(self._guard(self._tick_loop()), name="ingest-tick"))

    # ------------------------------------------------------------- rebalance hooks

    def on_assigned(self, tps: list[TP]) -> None:
        """Consumer-thread hook (on the loop): partitions added."""
        self._assigned.update(tps)

    async def on_revoked(self, tps: list[TP]) -> Mapping[TP, int]:
        """Consumer-thread hook (on the loop): drop the partitions' state.

        Returns:
            The committable offsets of ``tps``, for the consumer thread to commit before the
            revoke completes.
        """
        self._drop(tps)
        revoked = set(tps)
        committable = {tp: off for tp, off in self.tracker.committable().items() if tp in revoked}
        self.tracker.revoke(tps)
        return committable

    def on_lost(self, tps: list[TP]) -> None:
        """Consumer-thread hook (on the loop): partitions lost; drop, commit nothing."""
        self._drop(tps)
        self.tracker.revoke(tps)

    def _drop(self, tps: Iterable[TP]) -> None:
        revoked = set(tps)
        self._assigned -= revoked
        self._generation += 1
        for tp in revoked:
            self._revoked_in[tp] = self._generation
        self.window.revoke(revoked)
        kept: list[Batch] = []
        for batch in self._queue:
            contacts = [c for c in batch.contacts if c.source.tp not in revoked]
            covered = [r for r in batch.covered if r.tp not in revoked]
            self.stats.dropped_on_revoke += len(batch.covered) - len(covered)
            if len(covered) == len(batch.covered):
                kept.append(batch)
            elif contacts:
                kept.append(Batch.of(contacts, covered, batch.flush_reason, batch.created_at, batch.attempt))
            elif covered:
                self.tracker.settle_many(covered)  # only superseded records of kept partitions
        self._queue = kept
        # Records superseded by dropped ones come back through the window's next output.
        self._handle(self.window.poll())

    # ------------------------------------------------------------------ consuming

    async def _consume_loop(self) -> None:
        """Feed consumed lists to the decode pool, in order (the feeder)."""
        while True:
            await self._flowing.wait()
            async with contextlib.AsyncExitStack() as slot:
                await self._slots.acquire()  # waits while the processor is behind
                slot.callback(self._slots.release)
                messages = await self.consumer.get_batch(timeout=self._tick_s * 4)
                if not messages:
                    continue
                chunk = self._feed(messages)
                self._backpressure()  # records count as unsettled from here on
                if not chunk.parts:
                    continue
                self._in_flight.put_nowait(chunk)
                slot.pop_all()  # the processor releases it

    def _feed(self, messages: list[Message]) -> _Chunk:
        """Track each record of an assigned partition and send it to its key's lane."""
        assigned = self._assigned
        track_run = self.tracker.track_run
        lanes = self.decode_pool.lanes
        self.stats.consumed += len(messages)
        self._metrics.events_consumed.inc(len(messages))
        parts = [_Part() for _ in range(lanes)]
        # per partition: the offsets to track, or None when it is not assigned
        runs: dict[tuple[str | None, int | None], list[int] | None] = {}
        for msg in messages:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            tp = (topic, partition)
            run = runs.get(tp, _UNSEEN)
            if run is _UNSEEN:
                run = runs[tp] = [] if tp in assigned else None
            if run is None or offset is None:
                continue  # revoked while it waited in the hand-off queue
            run.append(offset)
            # By key, not by partition: librdkafka hands over long runs of one partition, which
            # would keep one lane busy and the others idle. A contact's records share a key, so
            # they still meet one worker (and its phone cache), in consume order.
            key = msg.key()
            part = parts[hash(key) % lanes] if lanes > 1 and key else parts[0]
            part.messages.append(msg)
            part.refs.append(SourceRef(topic, partition, offset))  # type: ignore[arg-type]
            part.records.append((key, msg.value()))
        for tp, run in runs.items():
            if run:
                track_run(tp, run)  # type: ignore[arg-type]
        submit = self.decode_pool.submit
        used = [(index, part) for index, part in enumerate(parts) if part.messages]
        return _Chunk(self._generation, [part for _, part in used],
                      [submit(index, part.records) for index, part in used])

    async def _process_loop(self) -> None:
        """Take the decoded lists in feed order and window them (the processor)."""
        while True:
            chunk = await self._in_flight.get()
            self._processing = 1
            try:
                results = [await fut for fut in chunk.decoded]
                self._process(chunk, results)  # synchronous: no rebalance interleaves with a list
            finally:
                self._processing = 0
                self._slots.release()
            self._backpressure()

    def _process(self, chunk: _Chunk, results: list[list[Decoded]]) -> None:
        # Nothing was revoked since the list was fed (the common case): every record counts.
        revoked = chunk.generation != self._generation
        assigned = self._assigned
        revoked_in = self._revoked_in
        events: list[ContactEvent] = []
        append = events.append
        for part, decoded in zip(chunk.parts, results, strict=True):
            for msg, ref, out in zip(part.messages, part.refs, decoded, strict=True):
                if revoked and (ref.tp not in assigned or revoked_in.get(ref.tp, -1) >= chunk.generation):
                    continue  # revoked while it was decoded
                if out[0] != OK:
                    stage, error_class, message, reason = out
                    self._count_invalid(reason)
                    self._dead_letter(msg, ref, stage, error_class, message)
                    continue
                headers = msg.headers()
                append(ContactEvent(ref, msg.key(), msg.value(), plain_headers(headers) if headers else [],  # type: ignore[arg-type]
                                    msg.timestamp()[1], *out[1:]))
        self.stats.decoded += len(events)
        self._metrics.events_decoded.inc(len(events))
        if events:
            self._handle(self.window.add_many(events))

    def _count_invalid(self, reason: str) -> None:
        child = self._invalid.get(reason)
        # a reason outside INVALID_REASONS (``validate``) is counted as "other"
        (child if child is not None else self._metrics.invalid.labels(reason=reason)).inc()

    # ------------------------------------------------------------ window outputs

    def _handle(self, out: WindowOutput) -> None:
        # every window call passes through here: remember when the current window started
        flushed_deadline = self._window_deadline
        self._window_deadline = self.window.deadline()
        if not out:
            return
        if out.released:
            self.tracker.settle_many(out.released)
        for rejected in out.rejects:
            self._reject(rejected)
        if self._retract is not None:
            # in flush order with the opt-outs around them: a later opt-out blocks again
            for batch in out.batches:
                self._retract.release(contact.phone_e164 for contact in batch.contacts)
        if out.audits:
            self._audit(out.audits)
        if out.batches:
            max_items, max_age = self.settings.window.max_items, self.settings.window.max_age_s
            for batch in out.batches:
                self.stats.batches += 1
                # a second batch in one output is a window that started within this call
                age = batch.created_at - (flushed_deadline - max_age) if flushed_deadline is not None else 0.0
                flushed_deadline = None
                self._metrics.observe_flush(len(batch.contacts), max_items, max(0.0, age), batch.flush_reason)
                log.debug("batch %s: %d contact(s), %d record(s), reason %s", batch.batch_id,
                          len(batch.contacts), len(batch.covered), batch.flush_reason)
            self._queue.extend(out.batches)
            self._queue_changed.set()

    def _settle_when_acked(self, futures: list[asyncio.Future[None]], refs: Iterable[SourceRef]) -> None:
        """Settle ``refs`` once every future resolved successfully; fail the pipeline otherwise."""
        covered = tuple(refs)
        remaining = len(futures)

        def done(fut: asyncio.Future[None]) -> None:
            nonlocal remaining
            if fut.cancelled() or fut.exception() is not None:
                self._fail(fut.exception() or asyncio.CancelledError())
                return
            remaining -= 1
            if remaining == 0:
                self.tracker.settle_many(covered)

        for fut in futures:
            fut.add_done_callback(done)

    def _dead_letter(self, msg: Message, ref: SourceRef, stage: str, error_class: str, message: str) -> None:
        self._send_dead_letter(msg.key(), msg.value(), plain_headers(msg.headers()), ref, stage,
                               error_class, message, (ref,))

    def _send_dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]] | None,
        ref: SourceRef,
        stage: str,
        error_class: str,
        message: str,
        covered: Iterable[SourceRef],
    ) -> asyncio.Future[None] | None:
        self.stats.dead_lettered += 1
        self._count_dead_letters(stage, 1)
        try:
            fut = self._dead_letters.send_nowait(
                key=key, value=value, headers=headers, topic=ref.topic, partition=ref.partition,
                offset=ref.offset, stage=stage, error_class=error_class, message=message,
            )
        except KafkaError as exc:
            self._fail(exc)
            return None
        self._settle_when_acked([fut], covered)
        return fut

    def _count_dead_letters(self, stage: str, n: int) -> None:
        child = self._dead_lettered.get(stage)
        (child if child is not None else self._metrics.dead_lettered.labels(stage=stage)).inc(n)

    def _reject(self, rejected: Rejected) -> None:
        event = rejected.event
        self._send_dead_letter(event.key, event.raw, event.headers, event.source, STAGE_WINDOW,
                               f"connector.windowing.{rejected.reason}", rejected.message, rejected.covered)

    def _audit(self, audits: Sequence[AuditOutcome]) -> None:
        """Write one window output's audit records (and opt-out side effects) as one group;
        settle everything they cover once all are acknowledged."""
        winners = {a.event.contact_id: a for a in audits if a.reason == REASON_DNC}
        suppressed_topic, dnc_topic = self.settings.topics.suppressed, self.settings.topics.dnc
        publish = self.settings.dnc.publish_opt_outs
        encode, encode_dnc = self._audit_codec.encode, self._dnc_codec.encode
        checked_at = int(time.time() * 1000)
        records: list[Record] = []
        futures: list[asyncio.Future[None]] = []
        covered: list[SourceRef] = []
        counts: dict[tuple[str, str], int] = {}
        try:
            for audit in audits:
                event = audit.event
                reason, list_name = audit.reason, audit.list_name
                if reason == REASON_CANCELLED:
                    reason = REASON_OPTED_OUT
                elif reason == REASON_SUPERSEDED:
                    winner = winners.get(event.contact_id)
                    reason, list_name = (REASON_DNC, winner.list_name) if winner is not None else ("UNKNOWN", None)
                source = event.source
                record = {
                    "event_id": event.event_id,
                    "contact_id": event.contact_id,
                    "phone_e164": event.phone_e164,
                    "reason": reason,
                    "list_name": list_name,
                    "check_stage": audit.stage,
                    "checked_at": checked_at,
                    "source_topic": source.topic,
                    "source_partition": source.partition,
                    "source_offset": source.offset,
                }
                # built field by field with the schema's types: no validation pass needed
                records.append((suppressed_topic, encode(record, check=False), event.contact_id.encode("utf-8")))
                if audit.reason == REASON_OPTED_OUT:
                    if publish:
                        entry = {"list_name": self.settings.dnc.opt_out_list, "reason": "crm opt-out",
                                 "added_at": event.changed_at_ms, "expires_at": None}
                        records.append((dnc_topic, encode_dnc(entry, check=False), event.phone_e164.encode("ascii")))
                        self.stats.opt_outs_published += 1
                    if self._retract is not None:
                        futures.append(self._retract.push(event.phone_e164))
                covered.extend(audit.covered)
                # the window's own reason (finer than the audit record's); DNC at flush apart
                label = "dnc_at_flush" if audit.reason == REASON_DNC and audit.stage == STAGE_FLUSH else audit.reason
                counts[(label, list_name or "")] = counts.get((label, list_name or ""), 0) + 1
            futures.append(self.producer.produce_many_nowait(records))
        except (KafkaError, SerdeError) as exc:
            self._fail(exc)
            return
        self.stats.audited += len(audits)
        for (label, list_label), n in counts.items():
            self._metrics.suppressed.labels(reason=label, list=list_label).inc(n)
        self._settle_when_acked(futures, covered)

    # ------------------------------------------------------------------ delivery

    async def _submit_loop(self) -> None:
        while True:
            while not self._queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()
            if not self.dnc.ready:  # belt and braces: consumption starts only after it anyway
                await self.dnc.wait_ready(self.settings.dnc.bootstrap_timeout_s)
            batch = self._queue.pop(0)
            self._submitting = batch
            try:
                await self._submit_fn(batch)
            finally:
                self._submitting = None
            self._backpressure()

    async def settle_batch(self, batch: Batch) -> None:
        """The batch's job COMPLETED and its job event was acknowledged: settle every covered
        record (records of partitions revoked meanwhile are ignored)."""
        self.tracker.settle_offsets(batch.covered_offsets())
        self._backpressure()

    async def dead_letter_batch(self, batch: Batch, *, stage: str, error_class: str, message: str) -> None:
        """Send each contact's original record to the DLQ, wait for the acks, then settle every
        covered record (superseded records are settled with their winner, not re-sent).

        Raises:
            connector.kafka.exceptions.ProduceError: a dead letter was not acknowledged; the
                batch stays unsettled.
        """
        futures = []
        self._count_dead_letters(stage, len(batch.contacts))
        for contact in batch.contacts:
            self.stats.dead_lettered += 1
            futures.append(self._dead_letters.send_nowait(
                key=contact.key, value=contact.raw, headers=contact.headers,
                topic=contact.source.topic, partition=contact.source.partition,
                offset=contact.source.offset, stage=stage, error_class=error_class, message=message,
            ))
        await asyncio.gather(*futures)
        self.tracker.settle_offsets(batch.covered_offsets())
        self._backpressure()

    # ------------------------------------------------------------- ticker, commits

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self._handle(self.window.poll())
            self._backpressure()
            self._metrics.unsettled.set(self.tracker.unsettled)
            self._metrics.paused_partitions.set(len(self._assigned) if self._paused else 0)
            now = time.monotonic()
            if now - self._last_commit >= self._commit_interval_s:
                self._last_commit = now
                await self._commit()

    async def _commit(self) -> None:
        offsets = self.tracker.committable()
        if not offsets:
            return
        started = time.monotonic()
        try:
            done = await self.consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("commit failed (%s); retrying at the next interval", exc)
            return
        self._metrics.commit_duration.observe(time.monotonic() - started)
        self.tracker.mark_committed(done)
        self.stats.commits += 1

    def _backpressure(self) -> None:
        if self._stopping or self._consume_task is None:
            return
        queued = len(self._queue)
        if not self._paused and (self.tracker.over_limit or queued >= self._max_queued):
            self._paused = True
            self._flowing.clear()
            _detach(self.consumer.pause())
            log.info("backpressure: pausing (%d unsettled, %d batch(es) queued)",
                     self.tracker.unsettled, queued)
        elif self._paused and self.tracker.under_resume_mark and queued < self._max_queued:
            self._paused = False
            self._flowing.set()
            _detach(self.consumer.resume())
            log.info("backpressure: resuming (%d unsettled)", self.tracker.unsettled)


def _detach(fut: asyncio.Future[Any]) -> None:
    """Let a consumer request complete on its own; log (rather than leak) its failure."""

    def done(f: asyncio.Future[Any]) -> None:
        if not f.cancelled() and f.exception() is not None:
            log.warning("consumer request failed: %s", f.exception())

    fut.add_done_callback(done)


def _decode_spec(settings: Settings) -> DecodeSpec:
    return DecodeSpec(wire_format=settings.kafka.value_format, schema_registry_url=settings.kafka.schema_registry_url,
                      default_region=settings.phones.default_region, cache_size=settings.phones.cache_size)


class _Part:
    """The records of one consumed list sent to one decode lane."""

    __slots__ = ("messages", "records", "refs")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refs: list[SourceRef] = []
        self.records: list[tuple[bytes | None, bytes | None]] = []


@dataclass(slots=True)
class _Chunk:
    """One consumed list in the decode pool, per lane, in feed order."""

    generation: int
    parts: list[_Part]
    decoded: list[asyncio.Future[list[Decoded]]]
