"""Fixtures of the end-to-end tests: the six topics of a test, and running simulators."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from e2e_helpers import PRODUCED_NUMBERS, SimFactory, Topics, output_texts, pii_in

from connector.ops.logs import JsonFormatter, PlainFormatter
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


class _Capture(logging.Handler):
    """Formats every record as it is emitted, with both of the connector's formatters."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []
        self._plain, self._json = PlainFormatter(), JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, self._plain.format(record)))
        self.lines.append((record.name, self._json.format(record)))


@pytest.fixture(autouse=True)
def no_pii_anywhere(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Iterator[None]:
    """Issue 12, item 8: after every end-to-end scenario, no log line (plain or JSON, at any
    level) and no output record carries a phone number the test produced, in any spelling,
    or a configured secret."""
    PRODUCED_NUMBERS.clear()
    # asked for here, so that the topics outlive this fixture's check
    used = [request.getfixturevalue(name) for name in ("e2e_topics", "one_partition_topics")
            if name in request.fixturenames]
    capture = _Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
    leaks = []
    for name, line in capture.lines:
        leaks += [f"log {name}: {what}" for what in pii_in(line)]
    for topics in used:
        for topic, text in output_texts(kafka_bootstrap, topics):
            leaks += [f"{topic}: {what}" for what in pii_in(text)]
    assert not leaks, f"{len(leaks)} leak(s): {sorted(set(leaks))[:10]}"
