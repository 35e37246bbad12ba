"""The chaos soak of issue 12, item 9, shared by ``tests/soak/`` and ``bench/soak.py``.

One run: a broker of its own (``deploy/local/kafka.sh`` on a free port pair, a temporary
state dir), the six topics (contacts with 6 partitions), a ``sample_data`` input with
invalid numbers, DNC members and opt-outs (the DNC topic loaded first), a simulator with
5xx, 429 storms without ``Retry-After`` and WebSocket drops, and N ``cxone-connector run``
processes in one consumer group. While the events are produced at a steady pace, a seeded
plan SIGKILLs random instances (each restarted at once) and the broker (restarted on the
same data). An instance that exits by itself is restarted as an orchestrator would, and
reported. At the end every check is evaluated and reported, not only the first that fails.

It lives with the tests because it is built on their helpers (``e2e_helpers``,
``kafka_helpers`` and the e2e ``ConnectorProcess``): ``bench/soak.py`` puts this folder on
``sys.path``, so imports go one way only, bench to tests.

Profile ``v2``, and the input of ``e2e_helpers.sample``: a contact whose last event is an
opt-out keeps only its opt-out events. v2 cannot retract a contact, so that is what makes
the list exact; it is also the profile whose event stream the WebSocket drops exercise.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

_TESTS = Path(__file__).resolve().parents[1]
for _path in (_TESTS, _TESTS / "e2e"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

import aiohttp  # noqa: E402
import phonenumbers  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from e2e_helpers import (  # noqa: E402
    CONTACT,
    DNC_ENTRY,
    TERMINAL,
    Outcome,
    SimInspector,
    Topics,
    check_nothing_lost,
    collect,
    committed_offsets,
    completed_refs,
    connector_config,
    end_offsets,
    expected_phones,
    input_contacts,
    produce,
    sample,
    to_toml,
    wait_committed_to_end,
    wait_until,
)
from test_e2e_process import ConnectorProcess  # noqa: E402

from connector.cli.sample_data import SampleData  # noqa: E402
from connector.core.phones import mask_phones_in  # noqa: E402
from connector.simulator import (  # noqa: E402
    ErrorFaults,
    FaultSettings,
    JobSettings,
    RateLimitFaults,
    SimulatorConfig,
    SimulatorThread,
    WebSocketFaults,
)

ROOT = _TESTS.parent
KAFKA_SH = ROOT / "deploy/local/kafka.sh"
#: Log lines that mean an instance failed (besides its exit status).
FAILURE_MARKERS = ("Traceback (most recent call last)", "stopping after a failure")
Say = Callable[[str], None]


@dataclass(frozen=True)
class SoakSpec:
    """The size of one soak and its chaos. Defaults: the ``tests/soak`` size."""

    events: int = 20_000
    contacts: int = 6_000
    instances: int = 3
    partitions: int = 6
    #: Instance SIGKILLs (each restarted at once), spread over the feed.
    kills: int = 5
    #: Broker SIGKILLs, each restarted on the same data after ``broker_down_s``.
    broker_restarts: int = 1
    broker_down_s: float = 4.0
    #: Move one instance kill into each broker outage: the restart then starts without a broker.
    kill_during_outage: bool = True
    #: Share of API requests answered 500/502/503.
    error_rate: float = 0.10
    #: Every event socket is closed this long after it opened.
    ws_drop_every_s: float = 5.0
    #: 429 storms (no ``Retry-After``): a token bucket this small, for ``storm_s``, about every ``storm_every_s``.
    storm_every_s: float = 15.0
    storm_s: float = 4.0
    storm_rps: float = 4.0
    #: The events are produced evenly over this long; the kills fall in the same span.
    feed_s: float = 60.0
    #: How long the group may take to commit everything once the feed and the plan ended.
    drain_timeout_s: float = 75.0
    #: Hard limit of the whole run, set-up and checks included.
    budget_s: float = 210.0
    seed: int = 12
    #: ``ingest.workers`` of every instance (0: decode on the event loop, no worker processes).
    workers: int = 0
    window_items: int = 50
    window_age_s: float = 0.5
    job_items_per_second: float = 2_000.0
    broker_heap: str = "512m"

    def describe(self) -> str:
        return (f"{self.events} events over {self.feed_s:.0f}s, {self.instances} instances, "
                f"{self.partitions} partitions, {self.kills} instance kills, {self.broker_restarts} broker "
                f"restart(s), {self.error_rate:.0%} 5xx, 429 storms of {self.storm_s:.0f}s at "
                f"{self.storm_rps:g} req/s, WebSocket drops every {self.ws_drop_every_s:g}s, seed {self.seed}")


# ---------------------------------------------------------------------------- the broker


def free_port_pair() -> int:
    """A port ``p`` on 127.0.0.1 such that ``p`` and ``p + 1`` are both free now."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")


class Broker:
    """A broker of the soak's own: ``deploy/local/kafka.sh`` with its own state dir and port pair
    (the shared jar cache). Never the shared broker: ``KAFKA_BOOTSTRAP_SERVERS`` is ignored."""

    def __init__(self, home: Path, port: int, heap: str) -> None:
        self.home = home
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        self.env.update(CXONE_KAFKA_HOME=str(home), CXONE_KAFKA_PORT=str(port), CXONE_KAFKA_HEAP=heap)
        self.up = asyncio.Event()

    async def script(self, command: str, timeout: float) -> str:
        """Run ``kafka.sh command``; its output. Raises AssertionError when it fails."""
        proc = await asyncio.create_subprocess_exec(
            str(KAFKA_SH), command, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            async with asyncio.timeout(timeout):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"kafka.sh {command} did not finish within {timeout:.0f}s") from None
        except BaseException:  # cancelled: the script must not go on starting a broker
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        text = out.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise AssertionError(f"kafka.sh {command} exited with {proc.returncode}: {text[-2000:]}")
        return text

    async def start(self) -> None:
        """Start it (or restart it on the same data) and wait until its metadata answers."""
        await self.script("start", 150)
        await asyncio.to_thread(self._wait_metadata, 60.0)
        self.up.set()

    async def kill(self) -> None:
        """SIGKILL it; the data stays for the next :meth:`start`."""
        self.up.clear()
        await self.script("kill", 40)

    async def close(self) -> None:
        """Clean-up: kill it if it runs (no need to keep the data)."""
        self.up.clear()
        status = await asyncio.create_subprocess_exec(
            str(KAFKA_SH), "status", env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        if await status.wait() == 0:
            await self.script("kill", 40)

    def log_dir(self) -> Path:
        return self.home / "logs"

    def _wait_metadata(self, timeout: float) -> None:
        client = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.list_topics(timeout=5)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the broker's metadata did not answer within {timeout:.0f}s: {exc}") from exc
                time.sleep(0.3)


def create_topics(bootstrap: str, partitions: int) -> Topics:
    """The six topics (the DNC topic compacted) on the soak's broker, with leaders."""
    names = {role: f"soak.{role}" for role in ("contacts", "dnc", "jobs", "callbacks", "suppressed", "dlq")}
    client = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, num_partitions=partitions if role == "contacts" else 1, replication_factor=1,
                    config={"cleanup.policy": "compact"} if role == "dnc" else {})
           for role, name in names.items()]
    for fut in client.create_topics(new, operation_timeout=30).values():
        fut.result(timeout=60)
    deadline = time.monotonic() + 30
    for name in names.values():
        while True:
            md = client.list_topics(name, timeout=5).topics.get(name)
            if md is not None and md.error is None and md.partitions and all(
                    p.leader >= 0 for p in md.partitions.values()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {name} has no leaders after 30s")
            time.sleep(0.1)
    return Topics(contacts=names["contacts"], dnc=names["dnc"], job_events=names["jobs"],
                  callback_results=names["callbacks"], suppressed=names["suppressed"], dlq=names["dlq"],
                  partitions=partitions)


# ---------------------------------------------------------------------------- the input


def soak_sample(spec: SoakSpec) -> SampleData:
    """``e2e_helpers.sample`` with about ``spec.events`` events left after its opt-out filter
    (a second, seeded draw sized by the share the first one kept)."""
    def draw(count: int) -> SampleData:
        return sample(count=count, contacts=spec.contacts, seed=spec.seed, extra_dnc=max(10, spec.contacts // 30))

    first = draw(spec.events)
    kept = len(first.events) / max(1, spec.events)
    return first if kept >= 0.995 else draw(round(spec.events / kept))


class Feeder:
    """Produces the CRM events evenly over ``duration_s`` on one idempotent producer, so the
    order per key holds across a broker outage (librdkafka buffers and retries meanwhile)."""

    def __init__(self, bootstrap: str, topic: str, data: SampleData, duration_s: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.records = [(r.key.encode(), None if r.value is None else CONTACT.encode(r.value)) for r in data.events]
        self.duration_s = duration_s
        self.produced = 0
        self.acked = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self, flush_timeout: float) -> None:
        """Produce everything, then wait up to ``flush_timeout`` for the acks (a thread)."""
        # log_level 2: the connection errors of a broker outage are expected, not news
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 20,
                             "message.timeout.ms": 600_000, "queue.buffering.max.messages": 1_000_000,
                             "log_level": 2})

        def acked(err: Any, _msg: Any) -> None:
            if err is None:
                self.acked += 1
            elif len(self.errors) < 5:
                self.errors.append(str(err))

        start = time.monotonic()
        total = len(self.records)
        for i, (key, value) in enumerate(self.records):
            if self.stop.is_set():
                break
            due = start + self.duration_s * i / max(1, total)
            while (wait := due - time.monotonic()) > 0:
                producer.poll(min(wait, 0.1))
            producer.produce(self.topic, key=key, value=value, on_delivery=acked)
            self.produced += 1
            producer.poll(0)
        deadline = time.monotonic() + flush_timeout
        while (left := producer.flush(1.0)) and not self.stop.is_set() and time.monotonic() < deadline:
            pass
        if left:
            producer.purge()
            self.errors.append(f"{left} records still unacknowledged when the feed gave up")


# ---------------------------------------------------------------------------- the instances


@dataclass
class Incarnation:
    """One process of a slot."""

    slot: int
    number: int
    log: Path
    process: ConnectorProcess
    started_at: float
    #: The broker was down when this process started.
    broker_down: bool = False
    killed: bool = False
    returncode: int | None = None

    @property
    def name(self) -> str:
        return f"instance {self.slot} #{self.number}"


@dataclass
class UnexpectedExit:
    """An instance that exited when nobody killed or stopped it."""

    incarnation: Incarnation
    at_s: float
    cause: str

    def describe(self) -> str:
        inc = self.incarnation
        when = " (it started while the broker was down)" if inc.broker_down else ""
        return (f"{inc.name} exited with code {inc.returncode} {self.at_s:.0f}s into the feed, "
                f"{self.at_s - inc.started_at:.1f}s after its start{when} ({inc.log.name}): {self.cause}")


class Slot:
    """One member of the group: restarted after every kill or unexpected exit."""

    def __init__(self, index: int, config_file: Path, log_dir: Path, clock: Callable[[], float],
                 broker_up: asyncio.Event) -> None:
        self.index = index
        self.broker_up = broker_up
        self.config_file = config_file
        self.log_dir = log_dir
        self.clock = clock
        self.incarnations: list[Incarnation] = []
        self.lock = asyncio.Lock()
        self.restart_at: float | None = None
        self.crashes_in_a_row = 0

    @property
    def current(self) -> Incarnation | None:
        return self.incarnations[-1] if self.incarnations else None

    def alive(self) -> bool:
        cur = self.current
        return cur is not None and cur.process.alive()

    async def start(self) -> Incarnation:
        number = len(self.incarnations) + 1
        log = self.log_dir / f"instance-{self.index}-{number:02d}.log"
        process = ConnectorProcess(self.config_file, log)
        await process.start()
        inc = Incarnation(self.index, number, log, process, self.clock(), broker_down=not self.broker_up.is_set())
        self.incarnations.append(inc)
        self.restart_at = None
        return inc

    async def kill(self) -> Incarnation | None:
        """SIGKILL the current process; None when it was not running (nothing killed)."""
        cur = self.current
        if cur is None or not cur.process.alive():
            return None
        cur.killed = True
        cur.process.send(signal.SIGKILL)
        cur.returncode = await cur.process.wait(15)
        return cur

    async def terminate(self, timeout: float) -> Incarnation | None:
        """SIGTERM the current process and wait for its exit (SIGKILL after ``timeout``)."""
        cur = self.current
        if cur is None or not cur.process.alive():
            return None
        cur.process.send(signal.SIGTERM)
        try:
            cur.returncode = await cur.process.wait(timeout)
        except TimeoutError:
            await cur.process.stop()
            cur.returncode = None  # did not stop in time: reported by the caller
        return cur


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def exit_cause(path: Path) -> str:
    """The line of a log that best says why the process ended."""
    lines = _lines(path)
    for line in reversed(lines):
        if "stopping after a failure" in line:
            return line.strip()
    errors = [line for line in lines if " ERROR " in line or " CRITICAL " in line]
    if errors:
        return errors[-1].strip()
    return lines[-1].strip() if lines else "(empty log)"


def log_failures(path: Path) -> list[str]:
    """Tracebacks (with their exception line) and "stopping after a failure" lines of a log."""
    lines = _lines(path)
    out: list[str] = []
    for i, line in enumerate(lines):
        if FAILURE_MARKERS[0] in line:
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            last = lines[j].strip() if j < len(lines) else "(end of log)"
            before = lines[i - 1].strip() if i > 0 else ""
            out.append(f"{path.name}:{i + 1}: traceback after [{before[:200]}]: {last[:300]}")
        elif FAILURE_MARKERS[1] in line:
            out.append(f"{path.name}:{i + 1}: {line.strip()[:400]}")
    return out


def metrics_port(path: Path) -> int | None:
    """The port an instance serves ``/metrics`` on (its log says so at start-up)."""
    for line in _lines(path):
        found = re.search(r"metrics and health on port (\d+)", line)
        if found:
            return int(found.group(1))
    return None


async def instance_state(session: aiohttp.ClientSession, port: int) -> tuple[int, str, str]:
    """``(readyz status, readyz reason, DNC bootstrap state)`` of an instance."""
    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
        body = await resp.json(content_type=None)
        ready = (resp.status, str(body.get("reason", "")))
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    states = re.findall(r'^cxone_connector_dnc_bootstrap_state\{state="(\w+)"\} 1\.0$', text, re.M)
    return ready[0], ready[1], ",".join(states) or "unknown"


# ---------------------------------------------------------------------------- the plan

Action = Literal["kill_instance", "kill_broker", "start_broker", "storm_on", "storm_off"]


@dataclass(frozen=True)
class Step:
    """One planned act of chaos, ``at_s`` seconds after the feed began."""

    at_s: float
    action: Action
    slot: int = -1

    def describe(self) -> str:
        target = f" {self.slot}" if self.slot >= 0 else ""
        return f"t={self.at_s:5.1f}s {self.action}{target}"


def make_plan(spec: SoakSpec, rng: random.Random) -> list[Step]:
    """Seeded chaos: kills stratified over the feed, outages mid-feed, storms every ~storm_every_s."""
    span = spec.feed_s
    kill_times = [span * (i + rng.uniform(0.1, 0.9)) / spec.kills for i in range(spec.kills)]
    steps: list[Step] = []
    for j in range(spec.broker_restarts):
        at = span * (j + rng.uniform(0.3, 0.7)) / spec.broker_restarts
        steps += [Step(at, "kill_broker"), Step(at + spec.broker_down_s, "start_broker")]
        if spec.kill_during_outage and kill_times:
            nearest = min(range(len(kill_times)), key=lambda k: abs(kill_times[k] - at))
            kill_times[nearest] = at + min(1.0, spec.broker_down_s / 2)
    steps += [Step(at, "kill_instance", rng.randrange(spec.instances)) for at in kill_times]
    at = rng.uniform(1.0, spec.storm_every_s)
    while spec.storm_s > 0 and at < span:
        steps += [Step(at, "storm_on"), Step(at + spec.storm_s, "storm_off")]
        at += spec.storm_every_s * rng.uniform(0.7, 1.3)
    return sorted(steps, key=lambda s: s.at_s)


# ---------------------------------------------------------------------------- the report


@dataclass
class SoakReport:
    """What one soak did and found; ``failures`` is empty when every check passed."""

    spec: SoakSpec
    wall_s: float = 0.0
    events: int = 0
    expected: int = 0
    listed: int = 0
    kills: int = 0
    broker_restarts: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    lost: int = -1
    extra: int = -1
    dnc_sent: int = -1
    invalid_sent: int = -1
    jobs: int = -1
    batches: int = -1
    resubmissions: int = -1
    replays: int = -1
    invalid_inputs: int = -1
    invalid_on_dlq: int = -1
    dlq_by_stage: dict[str, int] = field(default_factory=dict)
    uncommitted_partitions: int = -1
    unexpected_exits: list[UnexpectedExit] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    workdir: Path | None = None

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def table(self) -> str:
        """One table of the run (Markdown, so it pastes into docs/reliability.md)."""
        f = self.faults
        rows = [
            ("events produced", f"{self.events}"),
            ("instance kills (SIGKILL + restart)", f"{self.kills}"),
            ("broker restarts (SIGKILL + restart)", f"{self.broker_restarts}"),
            ("unexpected instance exits", f"{len(self.unexpected_exits)}"),
            ("faults: 5xx answered / 429 answered / 429 storms",
             f"{f.get('5xx', 0)} / {f.get('429', 0)} / {f.get('storms', 0)}"),
            ("faults: event sockets opened (each dropped after "
             f"{self.spec.ws_drop_every_s:g}s)", f"{f.get('sockets', 0)}"),
            ("contacts expected / on the list", f"{self.expected} / {self.listed}"),
            ("contacts lost", f"{self.lost}"),
            ("contacts extra", f"{self.extra}"),
            ("DNC numbers sent", f"{self.dnc_sent}"),
            ("invalid numbers sent", f"{self.invalid_sent}"),
            ("jobs created / batches / resubmissions", f"{self.jobs} / {self.batches} / {self.resubmissions}"),
            ("idempotent replays (/_sim/replays)", f"{self.replays}"),
            ("invalid inputs on the DLQ / invalid inputs", f"{self.invalid_on_dlq} / {self.invalid_inputs}"),
            ("DLQ records by stage (re-reads after kills included)",
             ", ".join(f"{k} {v}" for k, v in sorted(self.dlq_by_stage.items())) or "-"),
            ("uncommitted partitions", f"{self.uncommitted_partitions}"),
            ("wall time", f"{self.wall_s:.0f}s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'soak':<{width}} | result |", f"|{'-' * (width + 2)}|--------|"]
        lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
        return "\n".join(lines)

    def summary_line(self) -> str:
        """The last line ``bench/soak.py`` prints (every N an integer; -1: not measured)."""
        return (f"soak: lost={self.lost} extra={self.extra} dnc_sent={self.dnc_sent} "
                f"invalid_sent={self.invalid_sent} uncommitted_partitions={self.uncommitted_partitions} "
                f"kills={self.kills} broker_restarts={self.broker_restarts}")

    def failure_text(self) -> str:
        head = f"the soak found {len(self.failures)} problem(s) (seed {self.spec.seed}"
        head += f"; logs in {self.workdir})" if self.workdir else ")"
        return head + ":\n" + "\n".join(f"- {m}" for m in self.failures)


# ---------------------------------------------------------------------------- the run


class Soak:
    """One run; :func:`run_soak` is the entry point."""

    def __init__(self, spec: SoakSpec, workdir: Path, say: Say) -> None:
        self.spec = spec
        self.workdir = workdir
        self.say = say
        self.rng = random.Random(spec.seed)  # noqa: S311 - chaos, not security
        self.report = SoakReport(spec, workdir=workdir)
        self.t0 = time.monotonic()
        self.feed_t0: float | None = None
        self.broker = Broker(workdir / "broker", free_port_pair(), spec.broker_heap)
        self.sim: SimulatorThread | None = None
        self.slots: list[Slot] = []
        self.topics: Topics | None = None
        self.group = f"soak-{uuid.uuid4().hex[:10]}"
        self.data: SampleData | None = None
        self.feeder: Feeder | None = None
        self.stopping = False
        self.storms = 0

    def now(self) -> float:
        """Seconds since the feed began (since the run began, before that)."""
        return time.monotonic() - (self.feed_t0 if self.feed_t0 is not None else self.t0)

    def log(self, message: str) -> None:
        self.say(f"[soak {time.monotonic() - self.t0:6.1f}s] {message}")

    # ------------------------------------------------------------------ set-up

    async def setup(self) -> None:
        spec = self.spec
        self.log(f"plan: {spec.describe()}; work dir {self.workdir}")
        await self.broker.start()
        self.log(f"own broker up on {self.broker.bootstrap} (state in {self.broker.home})")
        self.topics = await asyncio.to_thread(create_topics, self.broker.bootstrap, spec.partitions)
        self.data = soak_sample(spec)
        self.report.events = len(self.data.events)
        await asyncio.to_thread(produce, self.broker.bootstrap, self.topics.dnc, self.data.dnc, DNC_ENTRY)
        self.log(f"DNC topic loaded ({len(self.data.dnc)} numbers); input: {self.data.stats}")
        self.sim = SimulatorThread(SimulatorConfig(
            jobs=JobSettings(items_per_second=spec.job_items_per_second, concurrency=4, tick_s=0.02),
            faults=FaultSettings(seed=spec.seed, errors=ErrorFaults(rate=spec.error_rate),
                                 websocket=WebSocketFaults(drop_every_s=spec.ws_drop_every_s)),
        ))
        url = await asyncio.to_thread(self.sim.start)
        log_dir = self.workdir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(spec.instances):
            config = connector_config(self.topics, self.broker.bootstrap, url, group=self.group, overrides={
                "kafka": {"client_id": f"soak-{i}", "consume_batch_size": 500, "poll_timeout_s": 0.1},
                "ingest": {"workers": spec.workers},
                "window": {"max_items": spec.window_items, "max_age_s": spec.window_age_s},
                "monitor": {"job_deadline_s": 30.0},
                "shutdown_deadline_s": 2.0,
            })
            config_file = self.workdir / f"instance-{i}.toml"
            config_file.write_text(to_toml(config))
            self.slots.append(Slot(i, config_file, log_dir, self.now, self.broker.up))
        for slot in self.slots:
            await slot.start()
        await wait_until(self._all_ready, 90, f"all {spec.instances} instances ready (/readyz 200)", interval=0.5)
        self.log(f"{spec.instances} instances ready in group {self.group}; simulator on {url}")

    async def _all_ready(self) -> bool:
        await self._supervise_once()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            for slot in self.slots:
                cur = slot.current
                port = metrics_port(cur.log) if cur is not None else None
                if port is None:
                    return False
                try:
                    status, _, _ = await instance_state(session, port)
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    return False
                if status != 200:
                    return False
        return True

    # ------------------------------------------------------------------ chaos

    async def _supervise_once(self) -> None:
        """Record an instance that exited by itself, and restart it with backoff."""
        for slot in self.slots:
            async with slot.lock:
                cur = slot.current
                if cur is None or self.stopping:
                    continue
                proc = cur.process.proc
                if proc is not None and proc.returncode is not None and not cur.killed and cur.returncode is None:
                    cur.returncode = proc.returncode
                    exit_ = UnexpectedExit(cur, self.now(), exit_cause(cur.log))
                    self.report.unexpected_exits.append(exit_)
                    self.log(f"UNEXPECTED EXIT: {exit_.describe()}")
                    lived = self.now() - cur.started_at
                    slot.crashes_in_a_row = 0 if lived > 30 else slot.crashes_in_a_row + 1
                    slot.restart_at = self.now() + min(8.0, 2.0 ** slot.crashes_in_a_row / 2)
                if slot.restart_at is not None and self.now() >= slot.restart_at and not slot.alive():
                    inc = await slot.start()
                    self.log(f"restarted {inc.name} after its unexpected exit")

    async def supervise(self) -> None:
        while True:
            await self._supervise_once()
            await asyncio.sleep(0.25)

    async def _kill_instance(self, index: int) -> None:
        slot = self.slots[index]
        async with slot.lock:
            killed = await slot.kill()
            if killed is None:
                self.log(f"kill of instance {index} skipped: not running")
                return
            if killed.returncode != -signal.SIGKILL:  # it had exited by itself just before
                self.log(f"{killed.name} had already exited with {killed.returncode}")
                killed.killed, killed.returncode = False, None  # the supervisor reports it
                return
            self.report.kills += 1
            inc = await slot.start()
        down = "" if self.broker.up.is_set() else " (broker down)"
        self.log(f"SIGKILLed {killed.name}, started {inc.name}{down}")

    async def _restart_broker(self) -> None:
        started = time.monotonic()
        await self.broker.start()
        self.report.broker_restarts += 1
        self.log(f"broker back after {time.monotonic() - started:.1f}s of start-up")

    async def _storm(self, on: bool) -> None:
        assert self.sim is not None
        limit = RateLimitFaults(enabled=on, requests_per_second=self.spec.storm_rps,
                                burst=max(1, int(self.spec.storm_rps)), retry_after=False)
        sim = self.sim
        await asyncio.to_thread(sim.call, lambda: sim.simulator.configure_faults(rate_limit=limit))
        self.storms += on
        self.report.faults["storms"] = self.storms

    async def run_plan(self, steps: Iterable[Step]) -> None:
        background: list[asyncio.Task[None]] = []
        try:
            for step in steps:
                if (wait := step.at_s - self.now()) > 0:
                    await asyncio.sleep(wait)  # the plan's own schedule, not a wait for a condition
                self.log(f"step {step.describe()}")
                if step.action == "kill_instance":
                    await self._kill_instance(step.slot)
                elif step.action == "kill_broker":
                    await self.broker.kill()
                    self.log("broker SIGKILLed")
                elif step.action == "start_broker":
                    background.append(asyncio.create_task(self._restart_broker(), name="broker-restart"))
                else:
                    await self._storm(step.action == "storm_on")
            await asyncio.gather(*background)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def progress(self) -> None:
        assert self.topics is not None and self.feeder is not None
        while True:
            await asyncio.sleep(10)
            live = sum(slot.alive() for slot in self.slots)
            committed = "n/a (broker down)"
            if self.broker.up.is_set():
                try:
                    got = await asyncio.to_thread(committed_offsets, self.broker.bootstrap, self.group,
                                                  self.topics.contacts, self.topics.partitions)
                    committed = str(sum(max(0, o) for o in got.values()))
                except Exception as exc:
                    committed = f"n/a ({type(exc).__name__})"
            self.log(f"progress: produced {self.feeder.produced}/{len(self.feeder.records)}, "
                     f"committed {committed}, {live}/{len(self.slots)} instances alive, "
                     f"{self.report.kills} kills, {len(self.report.unexpected_exits)} unexpected exits")

    async def chaos(self) -> None:
        """Feed the events while the plan runs; then wait for the group to commit everything."""
        spec = self.spec
        assert self.topics is not None and self.data is not None
        steps = make_plan(spec, self.rng)
        self.log("chaos plan:\n  " + "\n  ".join(s.describe() for s in steps))
        self.feeder = Feeder(self.broker.bootstrap, self.topics.contacts, self.data, spec.feed_s)
        self.feed_t0 = time.monotonic()
        supervisor = asyncio.create_task(self.supervise(), name="supervisor")
        progress = asyncio.create_task(self.progress(), name="progress")
        feed = asyncio.create_task(asyncio.to_thread(self.feeder.run, spec.drain_timeout_s), name="feed")
        try:
            await self.run_plan(steps)
            if self.storms:
                await self._storm(False)
            await feed
            self.log(f"feed done: {self.feeder.acked} acknowledged; plan done: {self.report.kills} kills, "
                     f"{self.report.broker_restarts} broker restart(s)")
            try:
                await wait_committed_to_end(self.broker.bootstrap, self.group, self.topics,
                                            timeout=spec.drain_timeout_s)
                self.log("the group committed every partition to its end")
            except AssertionError as exc:
                self.report.fail(f"drain: {exc}")
        finally:
            self.feeder.stop.set()
            for task in (supervisor, progress):
                task.cancel()
            await asyncio.gather(supervisor, progress, return_exceptions=True)
            await asyncio.gather(feed, return_exceptions=True)
        if self.feeder.errors:
            self.report.fail(f"the feed itself failed (a harness problem): {self.feeder.errors}")

    # ------------------------------------------------------------------ the end

    async def finish_instances(self) -> None:
        """Probe every live instance's health, then SIGTERM it: exit code 0 is required."""
        self.stopping = True
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for slot in self.slots:
                cur = slot.current
                if cur is None or not cur.process.alive():
                    continue
                port = metrics_port(cur.log)
                if port is None:
                    self.report.fail(f"{cur.name} never said which port serves its health endpoints")
                    continue
                try:
                    status, reason, dnc = await instance_state(session, port)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    self.report.fail(f"{cur.name}: health endpoints did not answer at the end: {exc!r}")
                    continue
                self.log(f"{cur.name} at the end: /readyz {status} ({reason}); DNC table state {dnc}")
                if dnc != "ready":
                    self.report.fail(
                        f"{cur.name}: its DNC table is {dnc!r} at the end, yet /readyz answers {status} ({reason}): "
                        "the batches it sends are checked against a table that no longer follows the topic")
                elif status != 200:
                    self.report.fail(f"{cur.name}: /readyz answers {status} at the end ({reason})")
        for slot in self.slots:
            async with slot.lock:
                cur = await slot.terminate(20)
            if cur is None:
                continue
            if cur.returncode is None:
                self.report.fail(f"{cur.name} did not stop within 20s of SIGTERM ({cur.log.name})")
            elif cur.returncode != 0:
                self.report.fail(f"{cur.name} exited with {cur.returncode} after SIGTERM: {exit_cause(cur.log)}")

    async def check(self) -> None:
        """Every check of issue 12, item 9, each recorded with what went wrong."""
        assert self.sim is not None and self.topics is not None and self.data is not None
        report, topics, bootstrap = self.report, self.topics, self.broker.bootstrap
        async with SimInspector(self.sim.url) as insp:
            async def settled() -> bool:
                return all(j["status"] in TERMINAL for j in await insp.jobs())

            try:
                await wait_until(settled, 30, "every simulator job to end", interval=0.5)
            except AssertionError as exc:
                report.fail(f"simulator: {exc}")
            out = await collect(bootstrap, topics, insp, "v2")
            replays = await insp.get("/_sim/replays")
            requests = await insp.requests()
        inputs = await asyncio.to_thread(input_contacts, bootstrap, topics)
        self._check_list(out, inputs)
        self._count_jobs(out, replays, requests)
        self._check_dlq(out, inputs)
        await self._check_offsets()
        try:
            check_nothing_lost(out, topics, inputs)
        except AssertionError as exc:
            report.fail(f"accounting: {exc}")
        self.check_exits()

    def _check_list(self, out: Outcome, inputs: Mapping[tuple[int, int], str]) -> None:
        assert self.data is not None
        data, report = self.data, self.report
        expected = expected_phones(data, "v2")
        report.expected, report.listed = len(expected), len(out.phones)
        lost, extra = expected - out.phones, out.phones - expected
        report.lost, report.extra = len(lost), len(extra)
        dnc = {r.key for r in data.dnc}
        report.dnc_sent = len(out.phones & dnc)
        report.invalid_sent = sum(1 for p in out.phones if not _valid(p))
        if report.dnc_sent:
            report.fail(f"DNC VIOLATION: {report.dnc_sent} number(s) of the DNC topic are on the list: "
                        f"{_masked(out.phones & dnc)}")
        if report.invalid_sent:
            report.fail(f"{report.invalid_sent} invalid number(s) on the list: "
                        f"{_masked(p for p in out.phones if not _valid(p))}")
        if lost:
            report.fail(f"list: {len(lost)} compliant contact(s) missing: {self._explain(lost, out, inputs)}")
        if extra:
            by_phone = {c.e164: c for c in data.expected.values() if c.e164}
            kinds = Counter("on the DNC topic" if p in dnc else "opted out at the end"
                            if p in by_phone and not by_phone[p].opted_in else "unknown" for p in extra)
            report.fail(f"list: {len(extra)} number(s) that must not be there ({dict(kinds)}): {_masked(extra)}")

    def _explain(self, lost: set[str], out: Outcome, inputs: Mapping[tuple[int, int], str]) -> str:
        """Where the last record of a few missing contacts went."""
        assert self.data is not None
        last_ref: dict[str, tuple[int, int]] = {}
        for ref, cid in inputs.items():
            if cid not in last_ref or ref[1] > last_ref[cid][1]:
                last_ref[cid] = ref
        completed = completed_refs(out)
        dead = {(d.partition, d.offset): d for d in out.dead}
        notes = []
        for c in sorted((c for c in self.data.expected.values() if c.e164 in lost), key=lambda c: c.contact_id)[:5]:
            last = last_ref.get(c.contact_id, (-1, -1))
            where = ("in a COMPLETED batch" if last in completed else
                     f"dead-lettered at stage {dead[last].stage} ({dead[last].error_class})" if last in dead else
                     "in no COMPLETED batch and not on the DLQ")
            notes.append(f"{c.contact_id} (last record at partition/offset {last}: {where})")
        return "; ".join(notes)

    def _count_jobs(self, out: Outcome, replays: Mapping[str, Any], requests: Mapping[str, Any]) -> None:
        report = self.report
        report.jobs = len(out.sim_jobs)
        report.batches = len({e["batch_id"] for e in out.job_events})
        report.resubmissions = len(out.events_of("RETRYING"))
        report.replays = int(replays["total"])
        statuses: Counter[str] = Counter()
        for endpoint, by_status in requests["byEndpoint"].items():
            for status, n in by_status.items():
                statuses[status] += n
                if endpoint.endswith("/api/v2/events") and status == "101":
                    report.faults["sockets"] = report.faults.get("sockets", 0) + n
        report.faults["5xx"] = sum(n for s, n in statuses.items() if s.isdigit() and 500 <= int(s) < 600)
        report.faults["429"] = statuses.get("429", 0)

    def _check_dlq(self, out: Outcome, inputs: Mapping[tuple[int, int], str]) -> None:
        assert self.data is not None
        report = self.report
        invalid = {ref for ref, cid in inputs.items() if self.data.expected[cid].e164 is None}
        on_dlq = {(d.partition, d.offset) for d in out.dead}
        report.invalid_inputs = len(invalid)
        report.invalid_on_dlq = len(invalid & on_dlq)
        report.dlq_by_stage = dict(Counter(d.stage for d in out.dead))
        missing = sorted(invalid - on_dlq)
        if missing:
            report.fail(f"DLQ: {len(missing)} of {len(invalid)} invalid input record(s) are not on it, "
                        f"e.g. (partition, offset) {missing[:10]}")
        valid_dead = [d for d in out.dead if (d.partition, d.offset) not in invalid]
        if valid_dead:
            groups = Counter((d.stage, d.error_class) for d in valid_dead)
            first = {(d.stage, d.error_class): d for d in reversed(valid_dead)}
            said = "; ".join(f"{n} at stage {stage} ({cls}), e.g. partition/offset "
                             f"{(first[stage, cls].partition, first[stage, cls].offset)}: "
                             f"{mask_phones_in(first[stage, cls].message)[:300]}"
                             for (stage, cls), n in sorted(groups.items()))
            report.fail(f"DLQ: {len(valid_dead)} record(s) of valid numbers dead-lettered: {said}"
                        + self._refused_batches(out))

    @staticmethod
    def _refused_batches(out: Outcome) -> str:
        """For batches CXone refused at submit: what the refusal said and which offsets they held."""
        notes = []
        for e in out.events_of("FAILED"):
            if e["job_id"]:
                continue  # a job that ran and failed; a refusal at submit has no job
            ranges = [(r["partition"], r["first_offset"], r["last_offset"]) for r in e["source_ranges"]]
            notes.append(f"batch {e['batch_id']} attempt {e['attempt']} ({e['item_count']} items) refused: "
                         f"{mask_phones_in(e['detail'])[:200]}; (partition, first, last) offsets {ranges}")
        return (" | " + " | ".join(notes[:3])) if notes else ""

    async def _check_offsets(self) -> None:
        assert self.topics is not None
        topics, bootstrap = self.topics, self.broker.bootstrap
        ends = await asyncio.to_thread(end_offsets, bootstrap, topics.contacts, topics.partitions)
        got = await asyncio.to_thread(committed_offsets, bootstrap, self.group, topics.contacts, topics.partitions)
        behind = {p: (got.get(p), end) for p, end in ends.items() if got.get(p) != end}
        self.report.uncommitted_partitions = len(behind)
        if behind:
            self.report.fail("offsets: the group's committed offset is not the end offset on partition(s) "
                             + ", ".join(f"{p} (committed {c}, end {e})" for p, (c, e) in sorted(behind.items())))

    def check_exits(self) -> None:
        report = self.report
        for exit_ in report.unexpected_exits:
            report.fail(f"exit: {exit_.describe()}")
        seen = {_gist(e.cause) for e in report.unexpected_exits}  # already said, with the exit
        for slot in self.slots:
            for inc in slot.incarnations:
                for problem in log_failures(inc.log):
                    key = _gist(problem)
                    if key not in seen:
                        seen.add(key)
                        report.fail(f"log of {inc.name}: {problem}")
        if report.kills < self.spec.kills:
            report.fail(f"harness: only {report.kills} of {self.spec.kills} planned instance kills hit a running "
                        "process")
        if report.broker_restarts < self.spec.broker_restarts:
            report.fail(f"harness: {report.broker_restarts} of {self.spec.broker_restarts} broker restarts done")

    # ------------------------------------------------------------------ clean-up

    async def close(self) -> None:
        """Stop every process this run started, whatever happened."""
        self.stopping = True
        for slot in self.slots:
            for inc in slot.incarnations:
                try:
                    await inc.process.stop()
                except Exception as exc:
                    self.log(f"clean-up: could not kill {inc.name}: {exc!r}")
        if self.sim is not None:
            try:
                await asyncio.to_thread(self.sim.stop)
            except Exception as exc:
                self.log(f"clean-up: could not stop the simulator: {exc!r}")
        try:
            await self.broker.close()
        except Exception as exc:
            self.log(f"clean-up: could not kill the soak's broker (state in {self.broker.home}): {exc!r}")


def _gist(line: str) -> str:
    """A log problem without its file, line number and time stamp (to say each once)."""
    line = re.sub(r"^instance-\d+-\d+\.log:\d+: ", "", line)
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", "", line)[:300]


def _valid(phone: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(phone, None)))
    except phonenumbers.NumberParseException:
        return False


def _masked(phones: Iterable[str], limit: int = 5) -> str:
    """A few numbers with all but the last four digits masked (they are synthetic, but still)."""
    shown = sorted(phones)[:limit]
    return ", ".join("*" * max(0, len(p) - 4) + p[-4:] for p in shown)


async def run_soak(spec: SoakSpec, workdir: Path | None = None, say: Say = print) -> SoakReport:
    """Run one soak within ``spec.budget_s``; every process it started is gone when it returns.

    ``workdir`` keeps the configs and logs (a temporary directory, removed after a passing
    run, when None).
    """
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="cxone-soak-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    soak = Soak(spec, workdir, say)
    phase = "set-up"
    budget = asyncio.timeout(spec.budget_s)
    try:
        async with budget:
            await soak.setup()
            phase = "chaos"
            await soak.chaos()
            phase = "stopping the instances"
            await soak.finish_instances()
            phase = "checks"
            await soak.check()
    except TimeoutError as exc:
        if not budget.expired():
            soak.report.fail(f"{phase}: {exc!r}")
            say(traceback.format_exc())
        else:
            soak.report.fail(f"hard timeout: the soak ran past its budget of {spec.budget_s:.0f}s during {phase}")
        soak.check_exits()
    except AssertionError as exc:
        soak.report.fail(f"{phase}: {exc}")
        soak.check_exits()
    except Exception as exc:  # a harness or environment error: still reported, still cleaned up
        soak.report.fail(f"{phase}: the harness failed: {exc!r}")
        say(traceback.format_exc())
        soak.check_exits()
    finally:
        await soak.close()
    soak.report.wall_s = time.monotonic() - soak.t0
    if own and not soak.report.failures:
        shutil.rmtree(workdir, ignore_errors=True)
        soak.report.workdir = None
    return soak.report


__all__ = ["SoakReport", "SoakSpec", "Step", "make_plan", "run_soak"]
