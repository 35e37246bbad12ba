"""Fixtures of the end-to-end tests: the six topics of a test, and running simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from e2e_helpers import SimFactory, Topics

from connector.simulator import FaultSettings, JobSettings, Simulator, SimulatorConfig

#: Jobs that take a visible fraction of a second, so faults hit them while they run.
JOBS = JobSettings(items_per_second=400.0, concurrency=4, tick_s=0.01)


@pytest.fixture
def e2e_topics(topic_factory: Callable[..., str]) -> Topics:
    """All six topics, unique to the test; the input has 3 partitions, the DNC topic is compacted."""
    partitions = 3
    return Topics(
        contacts=topic_factory("optin", partitions=partitions),
        dnc=topic_factory("dnc", config={"cleanup.policy": "compact"}),
        job_events=topic_factory("jobs"),
        callback_results=topic_factory("callbacks"),
        suppressed=topic_factory("suppressed"),
        dlq=topic_factory("dlq"),
        partitions=partitions,
    )


@pytest.fixture
def one_partition_topics(topic_factory: Callable[..., str]) -> Topics:
    """Like ``e2e_topics`` with a single input partition (batches re-form identically on replay)."""
    return Topics(
        contacts=topic_factory("optin", partitions=1),
        dnc=topic_factory("dnc", config={"cleanup.policy": "compact"}),
        job_events=topic_factory("jobs"),
        callback_results=topic_factory("callbacks"),
        suppressed=topic_factory("suppressed"),
        dlq=topic_factory("dlq"),
        partitions=1,
    )


@pytest.fixture
async def start_sim() -> AsyncIterator[SimFactory]:
    """Start a simulator on a free port (``faults=``, ``jobs=``); stopped after the test."""
    started: list[Simulator] = []

    async def make(faults: FaultSettings | None = None, jobs: JobSettings = JOBS) -> Simulator:
        sim = Simulator(SimulatorConfig(port=0, jobs=jobs, faults=faults or FaultSettings()))
        await sim.start(host="127.0.0.1", port=0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()
