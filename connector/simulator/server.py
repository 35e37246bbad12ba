"""The simulator process: wires the handlers into one aiohttp app on one port (HTTP and
the v2 WebSocket), runs the job clock, and offers the in-process API used by tests::

    async with Simulator(SimulatorConfig()) as sim:   # or: await sim.start(port=0) ... await sim.stop()
        print(sim.url)                                # http://127.0.0.1:PORT
        sim.configure_faults(errors=ErrorFaults(rate=0.5))
        sim.state.jobs                                # the pure state
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from connector.errors import ConfigError
from connector.simulator import calllists, dncgroups, events, identity, inspect, v2, webhooks
from connector.simulator.accept import accept_middleware
from connector.simulator.config import FaultSettings, SimulatorConfig, validate
from connector.simulator.context import CTX, SimContext
from connector.simulator.exceptions import SimulatorError
from connector.simulator.faults import FaultInjector
from connector.simulator.httputil import error_middleware, fault_middleware, max_body_bytes
from connector.simulator.state import SimState

log = logging.getLogger(__name__)


class Simulator:
    """A CXone simulator serving both API profiles on one port.

    Args:
        config: settings; the defaults match the connector's defaults.
        clock: epoch seconds, for job progress, token expiry and timestamps (tests may
            inject a controllable one).
    """

    def __init__(
        self, config: SimulatorConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._initial = config or SimulatorConfig()
        cfg = self._initial
        self.state = SimState(clock, items_per_second=cfg.jobs.items_per_second,
                              concurrency=cfg.jobs.concurrency, tenant_limit=cfg.limits.tenant_active_records,
                              webhook_history=cfg.webhook_history)
        self.faults = FaultInjector(cfg.faults)
        self._ctx = SimContext(cfg, self.state, self.faults)
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.url = ""
        self.port = 0

    @property
    def config(self) -> SimulatorConfig:
        """The configuration in force (changed by :meth:`update_config`/:meth:`configure_faults`)."""
        return self._ctx.config

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[fault_middleware, accept_middleware, error_middleware],
                              client_max_size=max_body_bytes(self.config))
        app[CTX] = self._ctx
        app[inspect.RESET_HOOK] = self.reset
        v2.add_routes(app)
        events.add_routes(app)
        identity.add_routes(app)
        calllists.add_routes(app)
        dncgroups.add_routes(app)
        webhooks.add_routes(app)
        inspect.add_routes(app)
        return app

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen on ``host:port`` (port 0 picks a free one); ``self.url`` gives the address.

        Raises:
            SimulatorError: already started, or the address cannot be bound.
        """
        if self._runner is not None:
            raise SimulatorError("the simulator is already running")
        host = host or self.config.host
        port = self.config.port if port is None else port
        self._ctx.stopping = asyncio.Event()
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise SimulatorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        self._ticker = asyncio.create_task(self._tick_forever(), name="simulator-job-clock")
        log.info("CXone simulator listening on %s", self.url)

    async def _tick_forever(self) -> None:
        ctx = self._ctx
        while not ctx.stopping.is_set():
            try:
                ctx.hub.publish(self.state.tick())
            except Exception:
                # Never let the job clock die: log and keep ticking.
                log.exception("simulator job clock failed")
            await ctx.sleep(self.config.jobs.tick_s)

    async def stop(self) -> None:
        """Close every connection (hung ones and event sockets included) and stop listening."""
        self._ctx.stopping.set()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await events.close_all(self._runner.app)
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def update_config(self, config: SimulatorConfig) -> None:
        """Switch to ``config`` at runtime (faults, rates, limits, credentials; not host/port).

        Raises:
            ConfigError: the config is invalid.
        """
        problems = validate(config)
        if problems:
            raise ConfigError(problems)
        self._ctx.config = config
        self.faults.update(config.faults)
        self.state.items_per_second = config.jobs.items_per_second
        self.state.concurrency = config.jobs.concurrency
        self.state.tenant_limit = config.limits.tenant_active_records
        self.state.webhook_history = self.state.hooks.history = config.webhook_history

    def configure_faults(self, faults: FaultSettings | None = None, **changes: Any) -> FaultSettings:
        """Replace the fault settings, or change some of their fields.

        ``sim.configure_faults(FaultSettings(...))`` replaces them all;
        ``sim.configure_faults(rate_limit=RateLimitFaults(enabled=True))`` changes one part.

        Raises:
            ConfigError: the resulting settings are invalid.
            TypeError: an unknown field name is given.
        """
        new = dataclasses.replace(faults or self.config.faults, **changes)
        self.update_config(dataclasses.replace(self.config, faults=new))
        return new

    def reset(self) -> None:
        """Forget all state and go back to the start-up configuration (faults included)."""
        self.update_config(self._initial)
        self.state.reset()
        self.faults.reset()
