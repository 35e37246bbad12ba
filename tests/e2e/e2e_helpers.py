"""Helpers of the end-to-end tests: configuration, sample input, Kafka reads, simulator
inspection over HTTP, and the final "exact set, nothing lost" checks.

Everything talks to the real broker and to the simulator over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from kafka_helpers import committed_offsets as shared_committed_offsets

from connector.app import App
from connector.cli.sample_data import KeyedRecord, SampleData, SampleSpec, generate
from connector.config import Settings, load_settings
from connector.kafka import dlq_headers as dlq
from connector.serde.codec import AvroCodec

CONTACT = AvroCodec("ContactOptInChanged")
DNC_ENTRY = AvroCodec("DncEntry")
JOB_EVENT = AvroCodec("JobEvent")
CALLBACK_RESULT = AvroCodec("CallbackResult")
SUPPRESSED = AvroCodec("SuppressedContact")

#: The v2 contact list the connector writes to (its default ``cxone.contact_list_id``).
V2_LIST = "12345678-1234-1234-1234-123456789012"
WEBHOOK = "e2e"
CXONE_SECRET_ENV = "E2E_CXONE_SECRET"
ACCESS_KEY_ENV = "E2E_ACCESS_KEY_SECRET"
HOOK_SECRET_ENV = "E2E_HOOK_SECRET"
SECRETS_ENV = {CXONE_SECRET_ENV: "connector-secret", ACCESS_KEY_ENV: "ak-secret",
               HOOK_SECRET_ENV: "e2e-hook-secret"}
TERMINAL = frozenset({"COMPLETED", "FAILED", "ABORTED"})
#: The ``start_sim`` fixture: ``await start_sim(faults=..., jobs=...)`` gives a running Simulator.
SimFactory = Callable[..., Any]


@dataclass(frozen=True)
class Topics:
    """The six topics of one test (all made by ``topic_factory``)."""

    contacts: str
    dnc: str
    job_events: str
    callback_results: str
    suppressed: str
    dlq: str
    partitions: int

    def as_config(self) -> dict[str, str]:
        return {"contacts": self.contacts, "dnc": self.dnc, "job_events": self.job_events,
                "callback_results": self.callback_results, "suppressed": self.suppressed, "dlq": self.dlq}


# ---------------------------------------------------------------------------- configuration


def connector_config(
    topics: Topics, bootstrap: str, sim_url: str, *, profile: str = "v2", group: str | None = None,
    overrides: Mapping[str, Mapping[str, Any] | float] | None = None,
) -> dict[str, Any]:
    """A TOML-shaped configuration: short windows, short backoffs, a fresh group id.

    ``overrides`` are laid over the defaults here, section by section
    (``{"cxone": {...}}``); a scalar replaces a top-level key.
    """
    config: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group or f"e2e-{uuid.uuid4().hex[:12]}",
                  "consume_batch_size": 200, "poll_timeout_s": 0.05, "statistics_interval_ms": 0,
                  "value_format": "avro"},
        "kafka_consumer": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
        "topics": topics.as_config(),
        "window": {"max_items": 20, "max_age_s": 0.4},
        "cxone": {"profile": profile, "base_url": sim_url, "auth_base_url": sim_url,
                  "client_secret": f"env:{CXONE_SECRET_ENV}", "access_key_id": "ak-id",
                  "access_key_secret": f"env:{ACCESS_KEY_ENV}", "request_timeout_s": 3.0,
                  "connect_timeout_s": 2.0, "max_in_flight": 8, "max_request_attempts": 30,
                  "backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        "monitor": {"ping_interval_s": 0.5, "ping_timeout_s": 0.5, "poll_interval_s": 0.2,
                    "poll_interval_max_s": 1.0, "job_deadline_s": 10.0, "max_job_attempts": 3},
        "callbacks": {"urls": [f"{sim_url}/_sim/webhooks/{WEBHOOK}"], "secret": f"env:{HOOK_SECRET_ENV}",
                      "max_attempts": 8, "timeout_s": 2.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.2},
        "server": {"host": "127.0.0.1", "port": 0},
        "logging": {"level": "INFO"},
        "shutdown_deadline_s": 5.0,
    }
    for name, values in (overrides or {}).items():
        if isinstance(values, Mapping):
            config.setdefault(name, {}).update(values)
        else:
            config[name] = values
    return config


def settings_of(config: Mapping[str, Any]) -> Settings:
    """Load the configuration exactly as ``run --config`` would (secrets from the env mapping)."""
    return load_settings(config, env=SECRETS_ENV)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(config: Mapping[str, Any]) -> str:
    """A TOML document of scalars first, then one table per mapping (quoted keys)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, Mapping)]
    for name, table in config.items():
        if isinstance(table, Mapping):
            lines.append(f"\n[{name}]")
            lines.extend(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- sample input


def sample(count: int = 300, contacts: int = 120, seed: int = 5, **kw: Any) -> SampleData:
    """Sample data whose expected set the connector can reach exactly.

    The connector adds contacts and never removes one, so an opt-in that reached CXone in
    an earlier batch stays there after a later opt-out. Contacts whose *last* event is an
    opt-out therefore keep only their opt-out events (a later opt-out of a pending opt-in,
    within one window, is covered by the windowing tests).
    """
    spec = SampleSpec(count=count, contacts=contacts, seed=seed, invalid_share=kw.pop("invalid_share", 0.05),
                      opt_out_share=kw.pop("opt_out_share", 0.1), dnc_share=kw.pop("dnc_share", 0.15),
                      extra_dnc=kw.pop("extra_dnc", 10), **kw)
    data = generate(spec)
    opted_out = {cid for cid, c in data.expected.items() if not c.opted_in}
    data.events = [e for e in data.events
                   if not (e.key in opted_out and e.value is not None and e.value["opted_in"])]
    return data


def produce(bootstrap: str, topic: str, records: Iterable[KeyedRecord], codec: AvroCodec) -> int:
    """Produce keyed Avro records and wait for every ack; returns how many."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    errors: list[Any] = []
    n = 0
    for rec in records:
        value = None if rec.value is None else codec.encode(rec.value)
        producer.produce(topic, key=rec.key.encode(), value=value,
                         on_delivery=lambda err, _m: errors.append(err) if err else None)
        n += 1
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []
    return n


def produce_sample(bootstrap: str, topics: Topics, data: SampleData) -> None:
    """The DNC entries first (the connector bootstraps from them), then the CRM events."""
    remember_numbers(data)
    produce(bootstrap, topics.dnc, data.dnc, DNC_ENTRY)
    produce(bootstrap, topics.contacts, data.events, CONTACT)


def expected_phones(data: SampleData, profile: str) -> set[str]:
    """The phone numbers the list must hold: E.164 for v2, digits only for call-lists."""
    out: set[str] = set()
    for c in data.expected.values():
        if c.compliant:
            assert c.e164 is not None
            out.add(c.e164 if profile == "v2" else c.e164.lstrip("+"))
    return out


# ---------------------------------------------------------------------------- Kafka reads


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-reader-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The high watermark of every partition."""
    consumer = _consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (-1001 where none)."""
    got = shared_committed_offsets(bootstrap, group, [(topic, p) for p in range(partitions)])
    return {p: offset for (_, p), offset in got.items()}


def read_all(bootstrap: str, topic: str, timeout: float = 20.0) -> list[Message]:
    """Every record of ``topic`` up to its current high watermarks."""
    consumer = _consumer(bootstrap)
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in md.partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Message] = []
        positions = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + timeout
        while any(positions[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for msg in consumer.consume(500, 0.2):
                if msg.error() is None:
                    out.append(msg)
                    p, o = ref_of(msg)
                    positions[p] = o + 1
        return out
    finally:
        consumer.close()


def ref_of(msg: Message) -> tuple[int, int]:
    """``(partition, offset)`` of a consumed message."""
    partition, offset = msg.partition(), msg.offset()
    assert partition is not None and offset is not None
    return partition, offset


def value_of(msg: Message) -> bytes:
    value = msg.value()
    assert isinstance(value, bytes)
    return value


def decode_all(bootstrap: str, topic: str, codec: AvroCodec) -> list[dict[str, Any]]:
    return [codec.decode(value_of(m)) for m in read_all(bootstrap, topic)]


@dataclass(frozen=True)
class DeadLetter:
    """A DLQ record, decoded: its source reference, stage, class and message, and the event."""

    partition: int
    offset: int
    stage: str
    error_class: str
    message: str
    event: dict[str, Any]


def dead_letters(bootstrap: str, topics: Topics) -> list[DeadLetter]:
    out = []
    for msg in read_all(bootstrap, topics.dlq):
        h = dlq.header_dict(dlq.plain_headers(msg.headers()))
        assert h[dlq.TOPIC] == topics.contacts
        out.append(DeadLetter(int(h[dlq.PARTITION]), int(h[dlq.OFFSET]), h[dlq.STAGE],
                              h[dlq.EXCEPTION_CLASS], h[dlq.EXCEPTION_MESSAGE], CONTACT.decode(value_of(msg))))
    return out


# ---------------------------------------------------------------------------- waiting


async def wait_until(cond: Callable[[], Awaitable[bool]], timeout: float, what: str,
                     interval: float = 0.2) -> None:
    """Poll ``cond`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_committed_to_end(bootstrap: str, group: str, topics: Topics, timeout: float = 25.0) -> None:
    """Wait until the group's committed offsets equal the input's high watermarks."""
    ends = await asyncio.to_thread(end_offsets, bootstrap, topics.contacts, topics.partitions)

    async def done() -> bool:
        got = await asyncio.to_thread(committed_offsets, bootstrap, group, topics.contacts, topics.partitions)
        return got == ends

    await wait_until(done, timeout, f"committed offsets to reach {ends}", interval=0.3)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[App]:
    """Run an :class:`App` in this loop; on exit stop it gracefully and require exit code 0."""
    app = App(settings)
    task = asyncio.create_task(app.run(), name="e2e-app")
    try:
        yield app
    finally:
        app.request_stop()
        async with asyncio.timeout(settings.shutdown_deadline_s + 15):
            code = await task
    assert code == 0, f"the connector exited with {code}"


# ---------------------------------------------------------------------------- simulator


@dataclass
class SimInspector:
    """The simulator's inspection API over HTTP."""

    url: str
    session: aiohttp.ClientSession = field(init=False)

    async def __aenter__(self) -> SimInspector:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def get(self, path: str) -> Any:
        async with self.session.get(self.url + path) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def post(self, path: str, body: Any = None) -> Any:
        async with self.session.post(self.url + path, json=body or {}) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def list_id(self, profile: str) -> str | None:
        if profile == "v2":
            return V2_LIST
        lists = (await self.get("/_sim/lists"))["lists"]
        found = [lst["listId"] for lst in lists if lst["profile"] == "call-lists"]
        return found[0] if found else None

    async def phones(self, profile: str) -> set[str]:
        list_id = await self.list_id(profile)
        if list_id is None or list_id not in {lst["listId"] for lst in (await self.get("/_sim/lists"))["lists"]}:
            return set()
        body = await self.get(f"/_sim/lists/{list_id}/contacts")
        return {str(c["phoneNumber"]) for c in body["contacts"]}

    async def jobs(self) -> list[dict[str, Any]]:
        return list((await self.get("/_sim/jobs"))["jobs"])

    async def requests(self) -> dict[str, Any]:
        return dict(await self.get("/_sim/requests"))

    async def webhook_deliveries(self) -> list[dict[str, Any]]:
        return list((await self.get(f"/_sim/webhooks/{WEBHOOK}"))["deliveries"])


def statuses_seen(requests: Mapping[str, Any]) -> set[str]:
    """Every answer status (or fault) the simulator counted, over all endpoints."""
    return {status for by_status in requests["byEndpoint"].values() for status in by_status}


# ---------------------------------------------------------------------------- final checks


@dataclass
class Outcome:
    """What the run left on the topics and in the simulator."""

    job_events: list[dict[str, Any]]
    callback_results: list[dict[str, Any]]
    suppressed: list[dict[str, Any]]
    dead: list[DeadLetter]
    sim_jobs: list[dict[str, Any]]
    phones: set[str]

    def events_of(self, status: str) -> list[dict[str, Any]]:
        return [e for e in self.job_events if e["status"] == status]


async def collect(bootstrap: str, topics: Topics, sim: SimInspector, profile: str) -> Outcome:
    return Outcome(
        job_events=await asyncio.to_thread(decode_all, bootstrap, topics.job_events, JOB_EVENT),
        callback_results=await asyncio.to_thread(decode_all, bootstrap, topics.callback_results,
                                                 CALLBACK_RESULT),
        suppressed=await asyncio.to_thread(decode_all, bootstrap, topics.suppressed, SUPPRESSED),
        dead=await asyncio.to_thread(dead_letters, bootstrap, topics),
        sim_jobs=await sim.jobs(),
        phones=await sim.phones(profile),
    )


def input_contacts(bootstrap: str, topics: Topics) -> dict[tuple[int, int], str]:
    """``(partition, offset) -> contact id`` of every input record (keys are contact ids)."""
    return {ref_of(m): (m.key() or b"").decode() for m in read_all(bootstrap, topics.contacts)}


def check_nothing_lost(out: Outcome, topics: Topics, inputs: Mapping[tuple[int, int], str],
                       settled_statuses: frozenset[str] = frozenset({"COMPLETED"})) -> None:
    """Every input record is accounted for: in a batch whose job ended in one of
    ``settled_statuses`` (its event names the offset ranges), on the DLQ, audited, or
    superseded by a later record of the same contact that was audited (an audit names
    only the record it is about, and settles the ones it superseded)."""
    accounted: set[tuple[int, int]] = set()
    for e in out.job_events:
        if e["status"] in settled_statuses:
            for r in e["source_ranges"]:
                assert r["topic"] == topics.contacts
                accounted.update((r["partition"], o) for o in range(r["first_offset"], r["last_offset"] + 1))
    accounted.update((d.partition, d.offset) for d in out.dead)
    audited: dict[tuple[int, str], int] = {}
    for s in out.suppressed:
        assert s["source_topic"] == topics.contacts
        ref = (s["source_partition"], s["source_offset"])
        accounted.add(ref)
        key = (ref[0], s["contact_id"])
        audited[key] = max(audited.get(key, -1), ref[1])
    missing = [ref for ref in sorted(set(inputs) - accounted)
               if audited.get((ref[0], inputs[ref]), -1) <= ref[1]]
    assert not missing, f"records {missing[:20]} neither delivered, dead-lettered nor audited"


def check_events_and_callbacks(out: Outcome, profile: str, hooks: list[dict[str, Any]]) -> None:
    """Every simulator job has its SUBMITTED and terminal events on the job-events topic;
    every settled batch (COMPLETED, or dead-lettered after FAILED/ABORTED) has a DELIVERED
    callback result, and the webhook answered 200 exactly once per DELIVERED result."""
    by_job: dict[str, list[str]] = {}
    for e in out.job_events:
        assert e["profile"] == profile
        by_job.setdefault(e["job_id"], []).append(e["status"])
    for job in out.sim_jobs:
        seen = by_job.get(job["jobId"], [])
        assert seen and seen[0] == "SUBMITTED", f"job {job['jobId']}: events {seen}"
        # exactly one terminal event, the simulator's (a RETRYING of its batch may follow)
        assert [st for st in seen if st in TERMINAL] == [job["status"]], f"job {job['jobId']}: {seen}"
    completed = {e["batch_id"] for e in out.events_of("COMPLETED")}
    failed = {e["batch_id"] for e in out.events_of("FAILED") + out.events_of("ABORTED")}
    settled = completed | failed
    results = {r["batch_id"]: r for r in out.callback_results}
    assert settled <= results.keys(), f"no callback result for {sorted(settled - results.keys())[:5]}"
    assert all(results[b]["outcome"] == "DELIVERED" for b in settled)
    ok = [h for h in hooks if h["answeredStatus"] == 200]
    assert len(ok) == sum(1 for r in out.callback_results if r["outcome"] == "DELIVERED")
    assert len({h["headers"].get("Idempotency-Key") for h in ok}) == len(ok)


def completed_refs(out: Outcome) -> set[tuple[int, int]]:
    """``(partition, offset)`` of every record in a batch whose job COMPLETED."""
    return {(r["partition"], o) for e in out.events_of("COMPLETED") for r in e["source_ranges"]
            for o in range(r["first_offset"], r["last_offset"] + 1)}


def expected_after_dead_letters(data: SampleData, profile: str, out: Outcome, stage: str,
                                inputs: Mapping[tuple[int, int], str]) -> set[str]:
    """The list after some batches were dead-lettered at ``stage``.

    A compliant contact is on the list when its last event was not dead-lettered, or when
    an earlier record of it was in a batch that COMPLETED (contacts are never removed).
    """
    dead_ids = {d.event["event_id"] for d in out.dead if d.stage == stage}
    landed = {inputs[ref] for ref in completed_refs(out)}
    out_set: set[str] = set()
    for c in data.expected.values():
        if c.compliant and (c.last_event_id not in dead_ids or c.contact_id in landed):
            assert c.e164 is not None
            out_set.add(c.e164 if profile == "v2" else c.e164.lstrip("+"))
    return out_set


async def check_run(bootstrap: str, topics: Topics, sim_url: str, profile: str, expected: set[str] | None,
                    *, settled_statuses: frozenset[str] = frozenset({"COMPLETED"}),
                    data: SampleData | None = None, dead_stage: str = "") -> Outcome:
    """The checks every in-process run ends with: the exact set, every record accounted
    for, every job event and callback result on its topic.

    ``expected`` None: computed by :func:`expected_after_dead_letters` from ``data`` and
    the records dead-lettered at ``dead_stage``.
    """
    async with SimInspector(sim_url) as sim:
        out = await collect(bootstrap, topics, sim, profile)
        hooks = await sim.webhook_deliveries()
    inputs = await asyncio.to_thread(input_contacts, bootstrap, topics)
    if expected is None:
        assert data is not None and dead_stage
        expected = expected_after_dead_letters(data, profile, out, dead_stage, inputs)
    missing, extra = expected - out.phones, out.phones - expected
    assert not missing and not extra, f"{len(missing)} missing, {len(extra)} unexpected on the list"
    check_nothing_lost(out, topics, inputs, settled_statuses)
    check_events_and_callbacks(out, profile, hooks)
    return out


async def deliver(bootstrap: str, topics: Topics, sim_url: str, data: SampleData, *, profile: str = "v2",
                  timeout: float = 25.0, overrides: Mapping[str, Mapping[str, Any] | float] | None = None,
                  ) -> Settings:
    """Produce ``data``, run the connector until the group committed the whole input, stop it."""
    produce_sample(bootstrap, topics, data)
    settings = settings_of(connector_config(topics, bootstrap, sim_url, profile=profile, overrides=overrides))
    async with running(settings):
        await wait_committed_to_end(bootstrap, settings.kafka.group_id, topics, timeout)
    return settings


# ---------------------------------------------------------------------------- no PII, no secrets

#: The national numbers (digits) of every phone a test produced (any spelling) and the
#: configured secrets: none may appear in a log line or an output record.
PRODUCED_NUMBERS: set[str] = set()
_PHONE_RUN = re.compile(r"\+?\(?\d(?:[\s().-]?\d){6,}")


def remember_numbers(data: SampleData) -> None:
    """Note every number ``data`` spells, by its last 10 digits (US national number)."""
    spellings = [rec.key for rec in data.dnc] + [rec.value["phone"] for rec in data.events if rec.value]
    for text in spellings:
        for run in _PHONE_RUN.findall(text):
            digits = re.sub(r"\D", "", run)
            if len(digits) >= 10:
                PRODUCED_NUMBERS.add(digits[-10:])


def pii_in(text: str) -> list[str]:
    """What of ``text`` is a produced phone number (in any spelling) or a configured secret,
    masked for the failure message."""
    found = [f"secret {name}" for name, secret in SECRETS_ENV.items() if secret in text]
    for run in _PHONE_RUN.findall(text):
        digits = re.sub(r"\D", "", run)
        if len(digits) >= 10 and digits[-10:] in PRODUCED_NUMBERS:
            found.append(f"phone ...{digits[-2:]}")
    return found


def output_texts(bootstrap: str, topics: Topics) -> list[tuple[str, str]]:
    """Every output record as text: job events, callback results and audit records decoded,
    DLQ headers (the DLQ value is the original record, unchanged by design)."""
    out: list[tuple[str, str]] = []
    for topic, codec in ((topics.job_events, JOB_EVENT), (topics.callback_results, CALLBACK_RESULT),
                         (topics.suppressed, SUPPRESSED)):
        for msg in read_all(bootstrap, topic):
            out.append((topic, f"{msg.key()!r} {codec.decode(value_of(msg))!r}"))
    for msg in read_all(bootstrap, topics.dlq):
        out.append((topics.dlq, repr(dlq.header_dict(dlq.plain_headers(msg.headers())))))
    return out
