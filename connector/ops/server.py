"""The metrics and health HTTP server (aiohttp) on the metrics port.

- ``GET /metrics``: the injected registry in the Prometheus text or OpenMetrics format,
  whichever the scraper asks for.
- ``GET /healthz``: liveness. The handler running proves the event loop is alive; it also
  fails when the consumer thread has not polled within ``server.consumer_stall_s``.
- ``GET /readyz``: readiness. The DNC table is bootstrapped, partitions are assigned and a
  CXone token was obtained.

Both health endpoints answer ``200 {"status": "ok", ...}`` or ``503 {"status": ..., "reason":
...}`` so a probe or a person sees why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from connector.config import ServerSettings
from connector.errors import ConnectorError
from connector.ops.health import Health

log = logging.getLogger(__name__)


class MetricsServerError(ConnectorError):
    """The metrics server could not start (for example, the port is taken)."""


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz``.

    Args:
        settings: host, port (0 picks a free one) and the consumer stall limit.
        registry: the registry ``/metrics`` exposes.
        health: the state the health endpoints read.
        max_unsettled_age_s: ``/healthz`` fails when records have been pending this long while
            nothing settled (``health.max_unsettled_age_s``).
        clock: monotonic clock, the same one the consumer thread stamps its polls with.
    """

    def __init__(
        self,
        settings: ServerSettings,
        registry: CollectorRegistry,
        health: Health,
        *,
        max_unsettled_age_s: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._max_unsettled_age_s = max_unsettled_age_s
        self._registry = registry
        self._health = health
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port actually bound.

        Raises:
            RuntimeError: the server is not started.
        """
        if self._port is None:
            raise RuntimeError("the metrics server is not started")
        return self._port

    def app(self) -> web.Application:
        """The aiohttp application with the three routes."""
        app = web.Application()
        app.router.add_get("/metrics", make_aiohttp_handler(self._registry))
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            MetricsServerError: the address cannot be bound (retriable: it may be freed).
        """
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._settings.host, self._settings.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsServerError(
                f"cannot listen on {self._settings.host}:{self._settings.port}: {exc.strerror}",
                retriable=True,
            ) from exc
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("metrics server listening on %s:%d", self._settings.host, self._port)

    async def stop(self) -> None:
        """Stop serving; a no-op when not started."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._port = None

    async def _healthz(self, request: web.Request) -> web.Response:
        alive, reason = self._health.live(self._clock(), self._settings.consumer_stall_s,
                                          self._max_unsettled_age_s)
        if alive:
            return web.json_response({"status": "ok", "reason": reason})
        return web.json_response({"status": "unhealthy", "reason": reason}, status=503)

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reason = self._health.ready()
        if ready:
            return web.json_response({"status": "ok", "reason": reason})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)
