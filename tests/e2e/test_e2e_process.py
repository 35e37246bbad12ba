"""The connector as a process (``python -m connector run --config FILE``): killed with
SIGKILL mid-run and restarted, and stopped with SIGTERM mid-batch. Nothing is lost, and
replays after the restart are absorbed by the idempotency key."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    SECRETS_ENV,
    TERMINAL,
    SimFactory,
    SimInspector,
    Topics,
    check_nothing_lost,
    collect,
    connector_config,
    expected_phones,
    input_contacts,
    produce_sample,
    sample,
    settings_of,
    to_toml,
    wait_committed_to_end,
    wait_until,
)

from connector.simulator import JobSettings

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
#: Jobs of 20 items take about a second when four run at once: a kill lands mid-job.
SLOW_JOBS = JobSettings(items_per_second=60.0, concurrency=4, tick_s=0.01)


class ConnectorProcess:
    """``python -m connector run --config FILE`` with its output in a log file."""

    def __init__(self, config_file: Path, log_file: Path) -> None:
        self.config_file = config_file
        self.log_file = log_file
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, **SECRETS_ENV}
        with open(self.log_file, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "connector", "run", "--config", str(self.config_file),
                cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )

    def send(self, sig: int) -> None:
        assert self.proc is not None and self.proc.returncode is None, self.tail()
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def tail(self, lines: int = 40) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        """Clean-up: kill the process if a failed test left it running."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()


def process_config(topics: Topics, bootstrap: str, sim_url: str, **kafka_consumer: str) -> dict[str, Any]:
    """Batches formed by size only (the age limit far above the run), so a restart from a
    committed offset re-forms the same batches, with the same idempotency keys."""
    return connector_config(topics, bootstrap, sim_url, overrides={
        "window": {"max_items": 20, "max_age_s": 2.0},
        "cxone": {"max_in_flight": 32},
        "kafka_consumer": kafka_consumer,
        "shutdown_deadline_s": 0.5,
    })


async def job_mid_flight(sim: SimInspector) -> bool:
    """True once some job COMPLETED while another is still running or queued."""
    statuses = [j["status"] for j in await sim.jobs()]
    return "COMPLETED" in statuses and any(s not in TERMINAL for s in statuses)


async def check_process_run(bootstrap: str, topics: Topics, sim: SimInspector, expected: set[str]) -> Any:
    """The exact set, nothing lost, and every job CXone completed has its COMPLETED event
    (a job that ended while the connector was down is reported after the replay)."""
    out = await collect(bootstrap, topics, sim, "v2")
    missing, extra = expected - out.phones, out.phones - expected
    assert not missing and not extra, f"{len(missing)} missing, {len(extra)} unexpected on the list"
    check_nothing_lost(out, topics, await asyncio.to_thread(input_contacts, bootstrap, topics))
    reported = {e["job_id"] for e in out.events_of("COMPLETED")}
    assert {j["jobId"] for j in out.sim_jobs if j["status"] == "COMPLETED"} <= reported
    return out


@pytest.fixture
async def processes() -> Any:
    started: list[ConnectorProcess] = []
    yield started
    for p in started:
        await p.stop()


async def test_sigkill_mid_run_then_restart_loses_nothing_and_makes_no_second_job(
    kafka_bootstrap: str, one_partition_topics: Topics, start_sim: SimFactory, tmp_path: Path,
    processes: list[ConnectorProcess],
) -> None:
    topics = one_partition_topics
    sim = await start_sim(jobs=SLOW_JOBS)
    data = sample(count=300, contacts=150, seed=31)
    produce_sample(kafka_bootstrap, topics, data)
    # A static member: the restarted process takes over the partition at once, without
    # waiting for the killed member's session to expire.
    config = process_config(topics, kafka_bootstrap, sim.url, **{"group.instance.id": "e2e-kill"})
    group = settings_of(config).kafka.group_id
    config_file = tmp_path / "connector.toml"
    config_file.write_text(to_toml(config))

    first = ConnectorProcess(config_file, tmp_path / "run1.log")
    processes.append(first)
    await first.start()
    async with SimInspector(sim.url) as insp:
        await wait_until(lambda: job_mid_flight(insp), 20, "a job in flight after one completed")
        first.send(signal.SIGKILL)
        assert await first.wait(10) == -signal.SIGKILL
        jobs_at_kill = await insp.jobs()
        unfinished = [j for j in jobs_at_kill if j["status"] not in TERMINAL]
        assert unfinished  # the kill really hit work in flight

        second = ConnectorProcess(config_file, tmp_path / "run2.log")
        processes.append(second)
        await second.start()
        try:
            await wait_committed_to_end(kafka_bootstrap, group, topics, timeout=40)
        except AssertionError:
            raise AssertionError(second.tail()) from None
        second.send(signal.SIGTERM)
        assert await second.wait(15) == 0, second.tail()

        out = await check_process_run(kafka_bootstrap, topics, insp, expected_phones(data, "v2"))
        replays = await insp.get("/_sim/replays")
    # The batches in flight at the kill were re-formed from the same offsets after the
    # restart: CXone saw their idempotency keys again and answered with the same jobs.
    assert replays["total"] >= len(unfinished)
    assert len(out.sim_jobs) == len({e["batch_id"] for e in out.job_events})  # one job per batch
    assert {j["jobId"] for j in unfinished} <= {e["job_id"] for e in out.events_of("COMPLETED")}


async def test_sigterm_mid_batch_exits_cleanly_and_restart_delivers_everything(
    kafka_bootstrap: str, one_partition_topics: Topics, start_sim: SimFactory, tmp_path: Path,
    processes: list[ConnectorProcess],
) -> None:
    topics = one_partition_topics
    sim = await start_sim(jobs=SLOW_JOBS)
    data = sample(count=300, contacts=150, seed=32)
    produce_sample(kafka_bootstrap, topics, data)
    config = process_config(topics, kafka_bootstrap, sim.url)
    group = settings_of(config).kafka.group_id
    config_file = tmp_path / "connector.toml"
    config_file.write_text(to_toml(config))

    first = ConnectorProcess(config_file, tmp_path / "run1.log")
    processes.append(first)
    await first.start()
    async with SimInspector(sim.url) as insp:
        await wait_until(lambda: job_mid_flight(insp), 20, "a job in flight after one completed")
        first.send(signal.SIGTERM)
        # graceful: the deadline (0.5 s) passes with jobs still running; exit code 0
        assert await first.wait(15) == 0, first.tail()
        assert "shutdown requested" in first.tail(200)

        second = ConnectorProcess(config_file, tmp_path / "run2.log")
        processes.append(second)
        await second.start()
        try:
            await wait_committed_to_end(kafka_bootstrap, group, topics, timeout=40)
        except AssertionError:
            raise AssertionError(second.tail()) from None
        second.send(signal.SIGTERM)
        assert await second.wait(15) == 0, second.tail()
        await check_process_run(kafka_bootstrap, topics, insp, expected_phones(data, "v2"))
