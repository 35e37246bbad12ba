"""Fixtures for the simulator tests: running simulators on 127.0.0.1 and an HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from connector.simulator import Simulator, SimulatorConfig


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A simulator with the default configuration on a free port."""
    async with Simulator(SimulatorConfig(port=0)) as s:
        yield s


@pytest.fixture
async def sim_factory() -> AsyncIterator[Callable[..., Any]]:
    """Start simulators with a given config (and optional clock); all stopped afterwards."""
    started: list[Simulator] = []

    async def make(config: SimulatorConfig | None = None, **kwargs: Any) -> Simulator:
        s = Simulator(config or SimulatorConfig(port=0), **kwargs)
        await s.start(port=0)
        started.append(s)
        return s

    yield make
    for s in started:
        await s.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that asks for JSON, as CXone (and the simulator's call-lists profile) requires."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15),
                                     headers={"Accept": "application/json"}) as session:
        yield session


