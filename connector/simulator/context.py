"""What every handler shares: the current config, the state, the fault injector, the
event hub and the stop signal. One object per running simulator, stored in the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiohttp import web

from connector.simulator.config import SimulatorConfig
from connector.simulator.events_hub import EventHub
from connector.simulator.faults import FaultInjector
from connector.simulator.state import SimState


@dataclass
class SimContext:
    """Shared by the handlers of one simulator."""

    config: SimulatorConfig
    state: SimState
    faults: FaultInjector
    hub: EventHub = field(default_factory=EventHub)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: Open event sockets, closed on shutdown.
    sockets: set[web.WebSocketResponse] = field(default_factory=set)

    async def sleep(self, seconds: float) -> bool:
        """Sleep, waking early when the simulator stops. Returns True when stopping."""
        if seconds <= 0:
            return self.stopping.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()


CTX = web.AppKey("simulator_context", SimContext)
