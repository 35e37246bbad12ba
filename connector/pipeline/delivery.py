"""Delivery: submit each batch to CXone, follow its jobs, publish every transition, settle.

Per batch (at most ``cxone.max_in_flight`` at once; ``submit`` blocks beyond that, which is
the ingest side's backpressure):

- submit → one job (v2) or several (call-lists chunks); SUBMITTED published per job;
- IN_PROGRESS published at most once per job per second (the monitor rate-limits);
- all jobs COMPLETED → COMPLETED published and acked, then ``on_completed(batch)`` and the
  webhook callbacks (in the background);
- a job FAILED / ABORTED / UNKNOWN, or a submit that exhausted its retries → RETRYING and a
  resubmission (attempt + 1, same records, new idempotency key) up to
  ``monitor.max_job_attempts``, then ``on_dead(batch, stage=..., ...)``;
- a fatal 4xx on submit → FAILED published, ``on_dead`` with the status and body (stage
  ``submit``); only that batch is affected.

Every job event is published with the batch's source offset ranges and awaited (acked).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector.config import Settings
from connector.core.models import Batch
from connector.cxone.backoff import Jitter, backoff, full_jitter
from connector.cxone.client import ProfileClient, SendCheck, SubmittedJob, make_client
from connector.cxone.exceptions import CXoneError, HTTPStatusError, RetriesExhaustedError
from connector.cxone.monitor import JobMonitor
from connector.cxone.protocol import COMPLETED, FAILED, IN_PROGRESS, UNKNOWN, JobUpdate
from connector.ops.logs import scrub
from connector.ops.metrics import JOB_OUTCOMES, Metrics
from connector.ops.supervisor import Supervisor
from connector.pipeline.callbacks import CallbackSender

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], Awaitable[None]]
SUBMITTED, RETRYING = "SUBMITTED", "RETRYING"


class OnDead(Protocol):
    def __call__(self, batch: Batch, *, stage: str, error_class: str, message: str) -> Awaitable[None]: ...


@dataclass(slots=True)
class _Job:
    """One job of one batch attempt; ``tail`` chains its event publications in order."""

    job_id: str
    batch: Batch
    item_count: int
    done: asyncio.Future[JobUpdate]
    tail: asyncio.Task[None] | None = None
    progress: int | None = None
    submitted_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Outcome:
    """How one attempt ended: ``ok``; else ``fatal`` (dead-letter now) or retry."""

    ok: bool
    fatal: bool = False
    stage: str = "job"
    error_class: str = ""
    message: str = ""
    job_ids: list[str] = field(default_factory=list)


def job_event(
    batch: Batch, *, job_id: str, list_id: str, profile: str, status: str, progress: int | None,
    item_count: int, detail: str, time_ms: int,
) -> dict[str, Any]:
    """A ``JobEvent`` record dict."""
    return {
        "job_id": job_id,
        "batch_id": batch.batch_id,
        "list_id": list_id,
        "profile": profile,
        "status": status,
        "progress": progress if progress is not None else 0,  # the schema's int: 0 when none is known
        "item_count": item_count,
        "attempt": batch.attempt,
        "time": time_ms,
        "detail": detail,
        "source_ranges": [
            {"topic": t, "partition": p, "first_offset": first, "last_offset": last}
            for t, p, first, last in batch.source_ranges()
        ],
    }


class Delivery:
    """Runs batches through CXone and reports their fate.

    Args:
        settings: the whole configuration (``cxone``, ``monitor``, ``callbacks``).
        publish_job_event: awaits the broker's ack of one ``JobEvent`` record.
        publish_callback_result: awaits the broker's ack of one ``CallbackResult`` record.
        on_completed: settles a batch whose jobs all COMPLETED (after their events were acked).
        on_dead: dead-letters a batch's records (``stage``, ``error_class``, ``message``).
        client: a profile client to use instead of building one from ``settings``.
        check: the send-time DNC check, asked before every HTTP attempt of every submission
            (:data:`connector.cxone.client.SendCheck`); None sends what the window flushed.
        jitter: backoff jitter for every retry (tests inject ``no_jitter``).
        metrics: CXone, job, WebSocket, callback and end-to-end families (a private registry
            when ``None``); handed to the client, the monitor and the callback sender.
        supervisor: watches the monitor's loops and the webhook deliveries (one of its own
            when ``None``); :meth:`wait` raises what it reports.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        publish_job_event: Publish,
        publish_callback_result: Publish,
        on_completed: Callable[[Batch], Awaitable[None]],
        on_dead: OnDead,
        client: ProfileClient | None = None,
        check: SendCheck | None = None,
        jitter: Jitter = full_jitter,
        metrics: Metrics | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics if metrics is not None else Metrics()
        self._job_outcomes = {o: self._metrics.cxone_jobs.labels(outcome=o) for o in JOB_OUTCOMES}
        self._publish_job_event = publish_job_event
        self._on_completed = on_completed
        self._on_dead = on_dead
        self._jitter = jitter
        self._check = check
        self.supervisor = supervisor if supervisor is not None else Supervisor(self.delays)
        self._client = client
        self._own_client = client is None
        self.callbacks = CallbackSender(settings.callbacks, publish_callback_result, jitter=jitter,
                                        metrics=self._metrics, supervisor=self.supervisor)
        self._monitor: JobMonitor | None = None
        self._slots = asyncio.Semaphore(max(1, settings.cxone.max_in_flight))
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs: dict[str, _Job] = {}
        self._publishing: set[asyncio.Task[None]] = set()
        self._closing = False
        self._failed = asyncio.Event()
        self._failure: BaseException | None = None
        self.stats: dict[str, int] = {"completed": 0, "dead": 0, "retries": 0, "jobs": 0}

    def delays(self) -> Iterator[float]:
        """A fresh backoff sequence from ``cxone.backoff_*`` (with this delivery's jitter)."""
        c = self._settings.cxone
        return backoff(c.backoff_initial_s, c.backoff_max_s, jitter=self._jitter)

    @property
    def client(self) -> ProfileClient:
        """The profile client (after :meth:`start`).

        Raises:
            RuntimeError: before :meth:`start`.
        """
        if self._client is None:
            raise RuntimeError("Delivery.start() was not called")
        return self._client

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet settled or dead-lettered."""
        return len(self._tasks)

    async def start(self) -> None:
        """Build the client and start the job monitor."""
        if self._client is None:
            self._client = make_client(self._settings.cxone, jitter=self._jitter, metrics=self._metrics)
        self._monitor = JobMonitor(self._client, self._settings.monitor, self._on_job_update,
                                   reconnect_delays=self.delays, metrics=self._metrics,
                                   supervisor=self.supervisor)
        await self._monitor.start()

    async def submit(self, batch: Batch) -> None:
        """Hand over a batch; returns once it is in flight (blocks while the limit is reached).

        Raises:
            RuntimeError: after :meth:`close` or before :meth:`start`.
        """
        if self._closing or self._monitor is None:
            raise RuntimeError("delivery is not running")
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._run(batch), name=f"batch-{batch.batch_id}")
        self._tasks.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("batch task crashed", exc_info=task.exception())
            if self._failure is None:  # its records can never settle: stop rather than stall
                self._failure = task.exception()
                self._failed.set()

    async def wait(self) -> None:
        """Return only by raising what broke a batch, the monitor or a webhook delivery beyond
        retrying (the app then stops).

        Raises:
            BaseException: the first error that crashed a batch task, or the supervisor's
                :class:`connector.ops.supervisor.TaskFailedError`.
        """
        supervised = asyncio.ensure_future(self.supervisor.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({supervised, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
            supervised.cancel()
        if self._failure is not None:
            raise self._failure
        assert self.supervisor.failure is not None  # noqa: S101 - the only other way out
        raise self.supervisor.failure

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for in-flight batches (and callbacks); True when all ended."""
        deadline = time.monotonic() + timeout
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        await self.callbacks.drain(max(0.0, deadline - time.monotonic()))
        return not self._tasks

    async def close(self) -> None:
        """Cancel what is still in flight (left unsettled: replayed after a restart) and close."""
        self._closing = True
        pending = list(self._tasks) + list(self._publishing)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.callbacks.close()
        if self._monitor is not None:
            await self._monitor.close()
        if self._client is not None and self._own_client:
            await self._client.close()

    # ------------------------------------------------------------------ events -----------

    async def _publish_acked(self, record: dict[str, Any]) -> None:
        """Publish until the broker acks (retrying with backoff: settlement depends on it)."""
        delays = self.delays()
        while True:
            try:
                await self._publish_job_event(record)
                return
            except Exception as exc:
                if not getattr(exc, "retriable", False):
                    raise  # a record the schema refuses, a bug: retrying cannot help
                delay = next(delays)
                log.warning("publishing job event for batch %s failed (%s); retrying in %.2fs",
                            record["batch_id"], exc, delay)
                await asyncio.sleep(delay)

    def _event(self, batch: Batch, *, job_id: str, status: str, progress: int | None,
               item_count: int, detail: str) -> dict[str, Any]:
        # CXone's error texts end up here: never a phone number or a secret on the topic
        return job_event(batch, job_id=job_id, list_id=self.client.list_id, profile=self.client.profile,
                         status=status, progress=progress, item_count=item_count, detail=scrub(detail),
                         time_ms=int(time.time() * 1000))

    def _publish_for_job(
        self, job: _Job, status: str, progress: int | None, detail: str
    ) -> asyncio.Task[None]:
        """Publish one event of ``job`` after the ones before it (per-job order)."""
        record = self._event(job.batch, job_id=job.job_id, status=status, progress=progress,
                             item_count=job.item_count, detail=detail)
        prev = job.tail

        async def chained() -> None:
            if prev is not None:
                with contextlib.suppress(Exception):
                    await prev
            await self._publish_acked(record)

        job.tail = asyncio.get_running_loop().create_task(chained())
        self._publishing.add(job.tail)
        job.tail.add_done_callback(self._publishing.discard)
        return job.tail

    def _on_job_update(self, update: JobUpdate) -> None:
        job = self._jobs.get(update.job_id)
        if job is None or job.done.done():
            return
        if update.terminal:
            self._job_ended(job, update.status)
            job.done.set_result(update)
        elif update.status == IN_PROGRESS:
            job.progress = update.progress
            self._publish_for_job(job, IN_PROGRESS, update.progress, update.detail)

    def _job_ended(self, job: _Job, status: str) -> None:
        # UNKNOWN is the monitor giving up after its deadline without news
        outcome = "timed_out" if status == UNKNOWN else status.lower()
        self._metrics.cxone_jobs_in_flight.dec()
        child = self._job_outcomes.get(outcome)
        (child if child is not None else self._metrics.cxone_jobs.labels(outcome=outcome)).inc()
        self._metrics.cxone_job_duration.observe(time.monotonic() - job.submitted_at)

    def _observe_end_to_end(self, batch: Batch) -> None:
        """Record produce time (the record timestamp) to completion for every sent contact."""
        now_ms = time.time() * 1000
        observe = self._metrics.end_to_end_latency.observe
        for contact in batch.contacts:
            if contact.produced_at_ms > 0:  # -1 / 0: the record carried no timestamp
                observe(max(0.0, now_ms - contact.produced_at_ms) / 1000)

    # ------------------------------------------------------------------ batches ----------

    async def _run(self, batch: Batch) -> None:
        current = batch
        max_attempts = max(1, self._settings.monitor.max_job_attempts)
        delays = self.delays()
        while True:
            outcome = await self._attempt(current)
            if outcome.ok:
                self.stats["completed"] += 1
                self._observe_end_to_end(current)
                await self._settle(batch, current, outcome)
                return
            if outcome.fatal or current.attempt >= max_attempts:
                self.stats["dead"] += 1
                await self._dead(batch, current, outcome)
                return
            self.stats["retries"] += 1
            self._metrics.cxone_resubmissions.inc()
            log.warning("batch %s attempt %d failed (%s); resubmitting", batch.batch_id, current.attempt,
                        outcome.error_class)
            await self._publish_acked(self._event(
                current, job_id=outcome.job_ids[0] if outcome.job_ids else "", status=RETRYING,
                progress=None, item_count=len(current.contacts),
                detail=f"{outcome.error_class}: {outcome.message}"[:1000]))
            await asyncio.sleep(next(delays))
            current = dataclasses.replace(current, attempt=current.attempt + 1)

    async def _attempt(self, batch: Batch) -> _Outcome:
        try:
            submitted = await self.client.submit(batch, check=self._check)
        except CXoneError as err:
            return self._submit_failure(batch, err)
        if not submitted:  # the send-time check left nothing to send: its audits settle it
            return _Outcome(ok=True)
        assert self._monitor is not None  # noqa: S101 - set in start()
        self._metrics.cxone_last_success.set_to_current_time()
        loop = asyncio.get_running_loop()
        jobs = [_Job(s.job_id, batch, s.item_count, loop.create_future()) for s in submitted]
        self.stats["jobs"] += len(jobs)
        self._metrics.cxone_jobs_in_flight.inc(len(jobs))
        for job in jobs:
            self._jobs[job.job_id] = job
            self._publish_for_job(job, SUBMITTED, 0, f"idempotency key {batch.idempotency_key()[:16]}")
            self._monitor.watch(job.job_id)
        try:
            ends = [await job.done for job in jobs]
            for job, end in zip(jobs, ends, strict=True):
                progress = 100 if end.status == COMPLETED and end.progress is None else end.progress
                self._publish_for_job(job, end.status, progress, end.detail)
            for job in jobs:  # every event acked before anything settles
                assert job.tail is not None  # noqa: S101 - at least SUBMITTED was published
                await job.tail
        finally:
            # jobs that ended left the gauge in _job_ended; the rest are abandoned (shutdown)
            self._metrics.cxone_jobs_in_flight.dec(sum(1 for job in jobs if not job.done.done()))
            for job in jobs:
                self._jobs.pop(job.job_id, None)
                self._monitor.forget(job.job_id)
        failed = [(job, end) for job, end in zip(jobs, ends, strict=True) if end.status != COMPLETED]
        if not failed:
            return _Outcome(ok=True, job_ids=[j.job_id for j in jobs])
        job, end = failed[0]
        return _Outcome(ok=False, stage="job", error_class=f"Job{end.status.title()}",
                        message=scrub(f"job {job.job_id} ended {end.status}: {end.detail}"),
                        job_ids=[j.job_id for j, _ in failed])

    def _submit_failure(self, batch: Batch, err: CXoneError) -> _Outcome:
        cause = err.last if isinstance(err, RetriesExhaustedError) else err
        if isinstance(err, HTTPStatusError) and not err.retriable and err.status not in (401, 403):
            log.error("batch %s refused by CXone: HTTP %d", batch.batch_id, err.status)
            return _Outcome(ok=False, fatal=True, stage="submit", error_class=type(err).__name__,
                            message=scrub(f"HTTP {err.status}: {err.body}"))
        return _Outcome(ok=False, stage="submit", error_class=type(err).__name__,
                        message=scrub(f"{type(cause).__name__}: {cause}"))

    async def _settle(self, batch: Batch, final: Batch, outcome: _Outcome) -> None:
        # a failure here crashes the batch task, which stops the app: never a silent stall
        await self._on_completed(batch)
        self._notify(final, outcome, COMPLETED)

    async def _dead(self, batch: Batch, final: Batch, outcome: _Outcome) -> None:
        if outcome.fatal:  # no job exists: record the refusal on the job-events topic too
            await self._publish_acked(self._event(final, job_id="", status=FAILED, progress=None,
                                                  item_count=len(final.contacts),
                                                  detail=outcome.message[:1000]))
        log.error("batch %s dead-lettered at stage %s: %s",
                  batch.batch_id, outcome.stage, outcome.error_class)
        # a failure here crashes the batch task, which stops the app: never a silent stall
        await self._on_dead(batch, stage=outcome.stage, error_class=outcome.error_class,
                            message=outcome.message)
        self._notify(final, outcome, "DEAD_LETTERED")

    def _notify(self, final: Batch, outcome: _Outcome, status: str) -> None:
        summary = {
            "batch_id": final.batch_id,
            "status": status,
            "job_ids": outcome.job_ids,
            "list_id": self.client.list_id,
            "profile": self.client.profile,
            "item_count": len(final.contacts),
            "record_count": len(final.covered),
            "attempt": final.attempt,
            "error": None if outcome.ok else f"{outcome.error_class}: {outcome.message}"[:1000],
            "source_ranges": [
                {"topic": t, "partition": p, "first_offset": a, "last_offset": b}
                for t, p, a, b in final.source_ranges()
            ],
            "time": int(time.time() * 1000),
        }
        self.callbacks.notify(summary, batch_id=final.batch_id, job_ids=outcome.job_ids,
                              idempotency_key=final.idempotency_key())


__all__ = ["Delivery", "OnDead", "SubmittedJob", "job_event"]
