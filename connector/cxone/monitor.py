"""Follows every submitted job to a terminal state: WebSocket events (v2) plus REST polling.

The decisions live in :class:`~connector.cxone.jobs.JobTracker`; this module only moves
bytes. The WebSocket side uses the ``websockets`` reconnecting iterator: it subscribes the
pending job ids after every (re)connect, detects a dead socket by ping timeout, and while
it is down the poll loop polls pending jobs. A 401 on the handshake refreshes the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from connector.config import MonitorSettings
from connector.cxone.backoff import backoff
from connector.cxone.client import ProfileClient
from connector.cxone.exceptions import CXoneError, ProtocolError
from connector.cxone.jobs import JobTracker
from connector.cxone.protocol import JobUpdate, v2_parse_event, v2_subscribe_frame
from connector.ops.metrics import Metrics
from connector.ops.supervisor import Supervisor

log = logging.getLogger(__name__)

OnUpdate = Callable[[JobUpdate], None]


def _retry_all_but_401(exc: Exception) -> Exception | None:
    """For the reconnecting iterator: a 401 leaves it (new token needed); the rest reconnect."""
    if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
        return exc
    return None


class JobMonitor:
    """Watches jobs and reports each reportable update through ``on_update``.

    Args:
        client: the profile client (job status; push URL and headers for v2).
        settings: poll intervals, deadline, WebSocket ping settings.
        on_update: called (synchronously, on the loop) for IN_PROGRESS and terminal updates;
            it must not block.
        reconnect_delays: backoff for WebSocket reconnects.
        clock: monotonic seconds.
        metrics: WebSocket state, reconnects, events and polling fallbacks (a private
            registry when ``None``).
        supervisor: where the loops run (restarted with backoff on an unexpected error; a
            subscription that fails stops the app).
    """

    def __init__(
        self,
        client: ProfileClient,
        settings: MonitorSettings,
        on_update: OnUpdate,
        *,
        reconnect_delays: Callable[[], Iterator[float]] = lambda: backoff(0.5, 30.0),
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._client = client
        #: Restarts the poll and socket loops with backoff; one of its own when not given.
        self.supervisor = supervisor if supervisor is not None else Supervisor(reconnect_delays)
        self._metrics = metrics if metrics is not None else Metrics()
        self._settings = settings
        self._on_update = on_update
        self._reconnect_delays = reconnect_delays
        self._clock = clock
        self.tracker = JobTracker(
            deadline_s=settings.job_deadline_s,
            poll_interval_s=settings.poll_interval_s,
            poll_interval_max_s=settings.poll_interval_max_s,
        )
        self._wake = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._subscriptions: set[asyncio.Task[None]] = set()
        self._polling: set[str] = set()
        self.push_up = False
        self.connects = 0

    @property
    def uses_push(self) -> bool:
        """True when job events come over a WebSocket."""
        return self._settings.use_websocket and self._client.push_url() is not None

    async def start(self) -> None:
        """Start the poll loop and, for a push profile, the WebSocket loop (supervised)."""
        self.supervisor.spawn("cxone-monitor-poll", self._poll_loop)
        if self.uses_push:
            self.supervisor.spawn("cxone-monitor-ws", self._ws_loop)

    async def close(self) -> None:
        """Stop both loops and close the socket."""
        await self.supervisor.close()
        for task in list(self._subscriptions):
            task.cancel()

    def watch(self, job_id: str) -> None:
        """Follow ``job_id`` until it ends; subscribes it at once when the socket is up."""
        self.tracker.watch(job_id, self._clock())
        if self._ws is not None and self.push_up:
            task = self.supervisor.watch("cxone-monitor-subscribe", self._subscribe(self._ws))
            self._subscriptions.add(task)
            task.add_done_callback(self._subscriptions.discard)
        self._wake.set()

    def forget(self, job_id: str) -> None:
        """Stop following ``job_id`` (its batch is gone)."""
        self.tracker.forget(job_id)

    def _emit(self, updates: list[JobUpdate]) -> None:
        for update in updates:
            try:
                self._on_update(update)
            except Exception:
                log.exception("job update handler failed for job %s", update.job_id)

    async def _subscribe(self, ws: ClientConnection) -> None:
        pending = self.tracker.pending
        if not pending:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(v2_subscribe_frame(pending))

    # ------------------------------------------------------------------ polling ----------

    async def _poll_one(self, job_id: str) -> None:
        try:
            update = await self._client.job_status(job_id)
        except CXoneError as err:
            log.info("poll of job %s failed: %s", job_id, type(err).__name__)
            self._emit(self.tracker.on_poll_failed(job_id, self._clock(), f"{type(err).__name__}: {err}"))
        else:
            self._emit(self.tracker.on_update(update, self._clock()))
        finally:
            self._polling.discard(job_id)
            self._wake.set()

    async def _poll_loop(self) -> None:
        self._polling.clear()  # a restarted loop: the polls of the one that died are gone
        async with asyncio.TaskGroup() as tg:
            while True:
                now = self._clock()
                for job_id in self.tracker.due_polls(now, push_up=self.push_up):
                    if job_id not in self._polling:
                        self._polling.add(job_id)
                        tg.create_task(self._poll_one(job_id))
                wait = self.tracker.next_wakeup(now, push_up=self.push_up)
                self._wake.clear()
                if wait is None or wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()

    # ---------------------------------------------------------------- WebSocket ----------

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            update = v2_parse_event(frame)
        except ProtocolError as err:
            log.warning("ignoring a malformed event frame: %s", err)
            return
        if update is not None:
            self._metrics.ws_events.inc()
            self._emit(self.tracker.on_update(update, self._clock()))

    async def _ws_loop(self) -> None:
        url = self._client.push_url()
        assert url is not None  # noqa: S101 - only started for push profiles
        delays = self._reconnect_delays()
        while True:
            try:
                headers = dict(await self._client.push_headers())
                async for ws in websockets.connect(
                    url,
                    additional_headers=headers,
                    ping_interval=self._settings.ping_interval_s,
                    ping_timeout=self._settings.ping_timeout_s,
                    open_timeout=max(self._settings.ping_timeout_s, 1.0),
                    close_timeout=1.0,
                    reconnect_delays=lambda: (d for d in self._reconnect_delays()),
                    process_exception=_retry_all_but_401,
                ):
                    await self._serve(ws)
                    delays = self._reconnect_delays()
            except InvalidStatus as exc:
                if exc.response.status_code == 401:
                    log.info("event socket handshake refused (401); refreshing the token")
                    self._client.invalidate_token(headers.get("Authorization", ""))
                    continue
                log.warning("event socket handshake failed: HTTP %d", exc.response.status_code)
            except CXoneError as err:
                log.warning("no token for the event socket: %s", type(err).__name__)
            await asyncio.sleep(next(delays))

    async def _serve(self, ws: ClientConnection) -> None:
        """Subscribe, then read events until the socket closes (or a ping times out)."""
        self.connects += 1
        if self.connects > 1:
            self._metrics.ws_reconnects.inc()
        # events sent while we were away are lost: poll every pending job once
        self.tracker.poll_all_soon(self._clock())
        self._ws = ws
        try:
            self.push_up = True  # before subscribing, so a job watched meanwhile subscribes itself
            self._metrics.ws_connected.set(1)
            await self._subscribe(ws)
            self._wake.set()
            async for frame in ws:
                self._on_frame(frame)
        except ConnectionClosed as exc:
            log.info("event socket closed (%s); polling until it is back", exc.rcvd or "no close frame")
        finally:
            self.push_up = False
            self._ws = None
            self._metrics.ws_connected.set(0)
            self._wake.set()
        # not reached when cancelled (shutdown): only a real drop falls back to polling
        self._metrics.ws_polling_fallbacks.inc()
