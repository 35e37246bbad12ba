"""The connector process: wires ingest, delivery, metrics and health, and runs them.

Nothing here decides anything about records; it only builds the parts, starts them in
order, watches them, and stops them in the reverse order within the shutdown deadline:

Start-up:
    1. metrics server (so ``/healthz`` answers while the DNC table bootstraps);
    2. producer;
    3. delivery (CXone client and job monitor); a first token is fetched in the background;
       with ``cxone.dnc_group_id`` (call-lists), the opt-out pusher;
    4. ingest (DNC bootstrap, then the consumer joins the group).

Watching (fail closed, never silent):
    - the send gate holds every submission while the DNC table is not current (and names why
      on ``/readyz``); past ``dnc.max_unavailable_s`` of that, the process exits with code 1
      so the orchestrator restarts it;
    - ingest, delivery and every supervised task (:class:`connector.ops.supervisor.Supervisor`)
      stop the app with code 1 when they fail, the log naming the stage or task;
    - ``/healthz`` fails on a stall (records pending past ``health.max_unsettled_age_s`` while
      nothing settles) or a dead task.

Shutdown (SIGTERM / SIGINT, or a failure):
    1. ``/readyz`` turns 503 (draining);
    2. ingest stops consuming, flushes its window, and waits — up to the deadline — for
       in-flight jobs to end and their records to settle; it commits what settled;
    3. delivery cancels what is still in flight (never committed: read again on restart);
    4. the supervised tasks, the DNC source, the producer (flushed) and the metrics server close.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from connector.config import Secret, Settings
from connector.core.models import Batch
from connector.cxone.backoff import backoff
from connector.cxone.calllists import CallListsClient
from connector.kafka.client_config import dnc_consumer_config, producer_config
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.dnc_refreshes import DncRefreshReader
from connector.kafka.dnc_source import DncSource
from connector.kafka.producer import AsyncProducer
from connector.ops.health import Health
from connector.ops.logs import register_secret
from connector.ops.metrics import TOPIC_ROLES, Metrics
from connector.ops.server import MetricsServer
from connector.ops.supervisor import Supervisor
from connector.pipeline.delivery import Delivery
from connector.pipeline.dnc_group import DncGroupPusher
from connector.pipeline.gate import SendGate
from connector.pipeline.ingest import IngestPipeline
from connector.serde.codec import AvroCodec

log = logging.getLogger(__name__)

#: How often health flags and sampled gauges are refreshed.
_TICK_S = 0.5


class App:
    """The whole connector.

    Args:
        settings: the configuration.
        registry: where metrics are registered (a private one per App by default).
        wall_clock: Unix time for the DNC lists' ages (tests move it by days).
    """

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None, *,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._wall_clock = wall_clock
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.health = Health()
        self.stopping = asyncio.Event()
        for secret in _secrets(settings):
            register_secret(secret.get())
        self.supervisor = Supervisor(lambda: backoff(0.5, 30.0),
                                     on_restart=lambda name: self.metrics.task_restarts.labels(task=name).inc())
        self._exit_reason: str | None = None
        self._job_codec = AvroCodec("JobEvent")
        self._callback_codec = AvroCodec("CallbackResult")

        producer_cfg: dict[str, Any] = dict(producer_config(settings))
        dnc_cfg: dict[str, Any] = dict(dnc_consumer_config(settings))
        if settings.kafka.statistics_interval_ms > 0:
            interval = str(settings.kafka.statistics_interval_ms)
            producer_cfg.update(stats_cb=self._stats("producer"), **{"statistics.interval.ms": interval})
            dnc_cfg.update(stats_cb=self._stats("dnc"), **{"statistics.interval.ms": interval})
        roles = {getattr(settings.topics, role): role for role in TOPIC_ROLES}
        self.producer = AsyncProducer(producer_cfg, metrics=self.metrics, topic_roles=roles)
        self.dnc = DncSource.from_settings(
            settings, dnc_cfg, dead_letters=DeadLetterWriter(self.producer, settings.topics.dlq), metrics=self.metrics,
        )
        self.delivery = Delivery(
            settings,
            publish_job_event=self._publish_job_event,
            publish_callback_result=self._publish_callback_result,
            on_completed=self._settle,
            on_dead=self._dead_letter,
            check=self._check_at_send,
            metrics=self.metrics,
            supervisor=self.supervisor,
        )
        self.pusher: DncGroupPusher | None = None
        if settings.cxone.profile == "call-lists" and settings.cxone.dnc_group_id:
            self.pusher = DncGroupPusher(self._add_dnc_records, self._remove_dnc_records,
                                         settings.cxone.dnc_group_id, delays=self.delivery.delays)
        self.gate = SendGate([self._dnc_check])
        # Freshness (the safe harbor's 31 days) is enforced for the lists that set a limit;
        # without one, no refresh record is needed and the reader is not started.
        self.refreshes: DncRefreshReader | None = None
        if any(p.enforce and p.max_age_days is not None for p in settings.dnc.lists.values()):
            self.refreshes = DncRefreshReader.from_settings(settings, metrics=self.metrics)
            refreshes = self.refreshes
            self.gate.add(lambda: refreshes.status(self._wall_clock()))
        self.ingest = IngestPipeline(
            settings, submit=self.delivery.submit, producer=self.producer, dnc=self.dnc, gate=self.gate,
            stats_cb=self._stats("contacts"), metrics=self.metrics,
            retract=self.pusher,
        )
        self.server = MetricsServer(settings.server, self.registry, self.health,
                                    max_unsettled_age_s=settings.health.max_unsettled_age_s)

    # ------------------------------------------------------------------ wiring helpers

    def _stats(self, client: str) -> Any:
        def on_stats(stats_json: str) -> None:
            self.metrics.kafka_stats.update(client, stats_json)

        return on_stats

    def _call_lists(self) -> CallListsClient:
        client = self.delivery.client
        assert isinstance(client, CallListsClient)  # noqa: S101 - the pusher exists only for call-lists
        return client

    async def _add_dnc_records(self, group_id: str, numbers: list[str]) -> None:
        await self._call_lists().add_dnc_records(group_id, numbers)

    async def _remove_dnc_records(self, group_id: str, numbers: list[str]) -> None:
        await self._call_lists().remove_dnc_records(group_id, numbers)

    def _dnc_check(self) -> tuple[bool, str]:
        """The send gate's DNC condition: the table is current (caught up, its thread alive,
        every partition fetched within ``dnc.max_stall_s``)."""
        currency = self.dnc.currency()
        return currency.current, ("the DNC table is current" if currency.current
                                  else f"the DNC table is not current: {currency.reason}")

    async def _check_at_send(self, batch: Batch) -> Batch | None:
        return await self.ingest.check_at_send(batch)

    async def _settle(self, batch: Batch) -> None:
        await self.ingest.settle_batch(batch)

    async def _dead_letter(self, batch: Batch, *, stage: str, error_class: str, message: str) -> None:
        await self.ingest.dead_letter_batch(batch, stage=stage, error_class=error_class, message=message)

    async def _publish_job_event(self, record: dict[str, Any]) -> None:
        key = (record.get("job_id") or record["batch_id"]).encode()
        await self.producer.produce(self.settings.topics.job_events, self._job_codec.encode(record), key=key)

    async def _publish_callback_result(self, record: dict[str, Any]) -> None:
        await self.producer.produce(
            self.settings.topics.callback_results, self._callback_codec.encode(record),
            key=str(record["batch_id"]).encode(),
        )

    async def _obtain_token(self) -> None:
        """Fetch a first CXone token for readiness, retrying until it works or we stop."""
        delay = 1.0
        while not self.stopping.is_set():
            try:
                await self.delivery.client.tokens.get()
                self.health.token_ok = True
                return
            except Exception as exc:  # every failure is retried; readiness says why
                log.warning("no CXone token yet (%s); retrying in %.0fs", type(exc).__name__, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
                delay = min(delay * 2, 30.0)

    async def _tick(self) -> None:
        """Copy the parts' state into the health flags and gauges; stop the process when the
        DNC table has not been current for ``dnc.max_unavailable_s``."""
        while True:
            self._refresh_health()
            if self._dnc_unavailable_too_long():
                return
            await asyncio.sleep(_TICK_S)

    def _refresh_health(self) -> None:
        health = self.health
        last_poll = self.ingest.consumer.last_poll
        if last_poll > 0:
            health.consumer_last_poll = last_poll
        health.dnc_ready = self.dnc.ready
        health.partitions_assigned = health.partitions_assigned or bool(self.ingest.assigned)
        health.gate = self.gate.status()
        health.stalled_s = self.ingest.core.stalled_for()
        health.dead_task = self.supervisor.dead()
        unavailable = []
        if self.ingest.registry_unavailable:
            unavailable.append("the schema registry")
        if self.metrics.kafka_stats.unreachable():
            unavailable.append("the Kafka brokers")
        health.unavailable = tuple(unavailable)
        self.metrics.send_gate_open.set(1 if health.gate[0] else 0)

    def _dnc_unavailable_too_long(self) -> bool:
        """True once the DNC table has not been current for ``dnc.max_unavailable_s``
        (``dnc.bootstrap_timeout_s`` while it catches up: a cold bootstrap makes progress, and a
        restart would only begin it again)."""
        failure = self.dnc.failure
        if failure is not None and not failure.retriable:  # its thread will not come back
            self._exit_reason = f"the DNC materialiser stopped for good: {type(failure).__name__}"
            log.error("stopping: %s (%s)", self._exit_reason, failure)
            return True
        currency = self.dnc.currency()
        since = currency.not_current_since
        if currency.current or since is None:
            return False
        dnc = self.settings.dnc
        limit = dnc.max_unavailable_s
        if currency.reason.startswith("catching up"):
            limit = max(limit, dnc.bootstrap_timeout_s)
        if time.monotonic() - since < limit:
            return False
        self._exit_reason = f"the DNC table has not been current for {limit:g}s"
        log.error("stopping: %s (%s)", self._exit_reason, currency.reason)
        return True

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        """Begin a graceful shutdown (signal handlers call this)."""
        if not self.stopping.is_set():
            log.info("shutdown requested")
            self.stopping.set()

    async def run(self) -> int:
        """Run until stopped or a stage fails; returns the process exit code."""
        started = time.monotonic()
        await self.server.start()
        log.info("metrics and health on port %d", self.server.port)
        await self.producer.start()
        if self.refreshes is not None:
            await self.refreshes.start()
        await self.delivery.start()
        if self.pusher is not None:
            await self.pusher.start(self.supervisor)
        await self.ingest.start()
        self.supervisor.spawn("cxone-token", self._obtain_token)
        tasks = [asyncio.create_task(self._tick(), name="health-tick")]
        watched = [
            asyncio.create_task(self.ingest.wait(), name="ingest"),
            asyncio.create_task(self.delivery.wait(), name="delivery"),
            asyncio.create_task(self.supervisor.wait(), name="supervisor"),
            asyncio.create_task(self.stopping.wait(), name="stop-wait"),
            tasks[0],
        ]
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        for task in watched[:3]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("stopping after a failure in %s: %r", task.get_name(), task.exception())
                code = 1
        if self._exit_reason is not None:
            code = 1
        elif tasks[0].done() and not tasks[0].cancelled() and tasks[0].exception() is not None:
            log.error("stopping after a failure in health-tick: %r", tasks[0].exception())
            code = 1
        await self.shutdown()
        for task in (*tasks, *watched):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        log.info("stopped after %.1fs", time.monotonic() - started)
        return code

    async def shutdown(self) -> None:
        """Stop everything in order within ``shutdown_deadline_s``."""
        self.health.draining = True
        deadline = self.settings.shutdown_deadline_s
        begin = time.monotonic()
        await self.ingest.stop(deadline)
        remaining = max(0.0, deadline - (time.monotonic() - begin))
        await self.delivery.drain(min(remaining, 5.0))
        await self.delivery.close()
        await self.supervisor.close()
        if self.pusher is not None:
            await self.pusher.close()
        await self.dnc.close()
        if self.refreshes is not None:
            await self.refreshes.close()
        with contextlib.suppress(Exception):
            await self.producer.flush(max(1.0, remaining))
        await self.producer.close()
        await self.server.stop()


def _secrets(settings: Settings) -> list[Secret]:
    """Every configured secret (redacted from logs and error texts)."""
    found: list[Secret] = []
    for section in vars(settings).values():
        if dataclasses.is_dataclass(section):
            found += [v for v in vars(section).values() if isinstance(v, Secret)]
    return found


async def run_app(settings: Settings) -> int:
    """Run the connector with SIGTERM/SIGINT wired to a graceful shutdown."""
    app = App(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    try:
        return await app.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
