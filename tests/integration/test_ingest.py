"""IngestPipeline on the real broker: DNC gate, windowing, opt-outs, settlement, rebalances, DLQ."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from integration_helpers import FakeRegistry
from kafka_helpers import committed_offsets

from connector.config import Settings, load_settings
from connector.core.dnc_table import DncTable
from connector.core.models import Batch
from connector.core.windowing import batch_payload_bytes
from connector.kafka import dlq_headers as dlq
from connector.kafka.client_config import dnc_consumer_config
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.dnc_source import DncSource
from connector.kafka.producer import AsyncProducer
from connector.pipeline.ingest import IngestPipeline
from connector.serde.codec import AvroCodec, raw_schema
from connector.serde.registry import RegistryClient

pytestmark = pytest.mark.kafka

CONTACT = AvroCodec("ContactOptInChanged")
DNC_ENTRY = AvroCodec("DncEntry")
AUDIT = AvroCodec("SuppressedContact")


def event(contact: str, phone: str, *, opted_in: bool = True, first_name: str | None = None,
          event_id: str | None = None) -> bytes:
    return CONTACT.encode({
        "event_id": event_id or uuid.uuid4().hex, "contact_id": contact, "phone": phone,
        "first_name": first_name, "opted_in": opted_in, "changed_at": 1_700_000_000_000, "source": "test",
    })


def dnc_entry(list_name: str) -> bytes:
    return DNC_ENTRY.encode({"list_name": list_name, "added_at": 1_700_000_000_000})


def send(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]],
         partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    errors: list[Any] = []
    for key, value in records:
        kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
        producer.produce(topic, key=key, value=value,
                         on_delivery=lambda err, _m: errors.append(err) if err else None, **kwargs)
    assert producer.flush(10) == 0
    assert errors == []


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            out += [m for m in consumer.consume(100, 0.1) if m.error() is None]
    finally:
        consumer.close()
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int = 1) -> dict[int, int]:
    got = committed_offsets(bootstrap, group, [(topic, p) for p in range(partitions)])
    return {p: offset for (_, p), offset in got.items()}


async def until(predicate: Callable[[], bool], timeout: float = 8.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


class Env:
    """Topics, settings and a recording ``submit`` for one test."""

    def __init__(self, bootstrap: str, topic_factory: Any, *, partitions: int = 1,
                 window: dict[str, Any] | None = None, publish_opt_outs: bool = False,
                 max_unsettled: int = 1000, consume_batch_size: int = 100, workers: int | None = None) -> None:
        self.bootstrap = bootstrap
        self.group = f"t-{uuid.uuid4().hex}"
        self.topics = {
            "contacts": topic_factory("optin", partitions=partitions),
            "dnc": topic_factory("dnc", config={"cleanup.policy": "compact"}),
            "suppressed": topic_factory("suppressed"),
            "dlq": topic_factory("dlq"),
        }
        self.settings: Settings = load_settings({
            "kafka": {"bootstrap_servers": bootstrap, "group_id": self.group, "poll_timeout_s": 0.05,
                      "consume_batch_size": consume_batch_size, "max_unsettled": max_unsettled,
                      "value_format": "avro"},
            "kafka_consumer": {"heartbeat.interval.ms": "300", "session.timeout.ms": "6000"},
            "topics": self.topics,
            "window": {"max_items": 100, "max_age_s": 0.3, **(window or {})},
            "dnc": {"publish_opt_outs": publish_opt_outs, "bootstrap_timeout_s": 20},
            "ingest": {} if workers is None else {"workers": workers},
        }, env={})
        self.batches: list[Batch] = []
        self.hold: Callable[[Batch], bool] = lambda _b: False
        self.held: list[Batch] = []

    def emitted_phones(self) -> list[str]:
        return [c.phone_e164 for b in self.batches for c in b.contacts]

    def emitted(self) -> dict[str, str | None]:
        return {c.contact_id: c.first_name for b in self.batches for c in b.contacts}

    @asynccontextmanager
    async def pipeline(self, *, table: Any = None) -> AsyncIterator[IngestPipeline]:
        producer = AsyncProducer({"bootstrap.servers": self.bootstrap, "linger.ms": "2"})
        await producer.start()
        dnc = DncSource(dnc_consumer_config(self.settings), self.topics["dnc"], table,
                        dead_letters=DeadLetterWriter(producer, self.topics["dlq"]), poll_timeout_s=0.05)
        holder: list[IngestPipeline] = []

        async def submit(batch: Batch) -> None:
            self.batches.append(batch)
            if self.hold(batch):
                self.held.append(batch)
            else:
                await holder[0].settle_batch(batch)

        pipeline = IngestPipeline(self.settings, submit=submit, producer=producer, dnc=dnc,
                                  commit_interval_s=0.1, tick_s=0.02)
        holder.append(pipeline)
        await pipeline.start()
        try:
            yield pipeline
            assert pipeline.failure is None
        finally:
            await pipeline.stop(deadline_s=3)
            await dnc.close()
            await producer.close()

    def audits(self, count: int) -> list[dict[str, Any]]:
        return [AUDIT.decode(m.value()) for m in read_topic(self.bootstrap, self.topics["suppressed"], count)]


@pytest.mark.parametrize("workers", [0, 2], ids=["on-the-loop", "two-workers"])
async def test_dnc_numbers_are_never_emitted_and_tombstones_re_allow(
    kafka_bootstrap: str, topic_factory, workers: int
) -> None:
    env = Env(kafka_bootstrap, topic_factory, window={"max_age_s": 1.5}, workers=workers)
    preloaded, late, fine = "+14155550101", "+14155550102", "+14155550103"
    send(kafka_bootstrap, env.topics["dnc"], [(preloaded.encode(), dnc_entry("national"))])
    async with env.pipeline() as pipeline:
        assert pipeline.decode_pool.workers == workers
        send(kafka_bootstrap, env.topics["contacts"], [
            (b"c1", event("c1", "(415) 555-0101")),   # on DNC before start-up: suppressed at arrival
            (b"c2", event("c2", "415.555.0102")),     # added to DNC while buffered: suppressed at flush
            (b"c3", event("c3", "+1 415 555 0103")),
        ])
        await until(lambda: len(pipeline.window) == 2)
        send(kafka_bootstrap, env.topics["dnc"], [(late.encode(), dnc_entry("internal"))])
        await until(lambda: pipeline.dnc.lookup(late) == "internal")
        await until(lambda: len(env.batches) == 1)
        assert env.emitted_phones() == [fine]

        # A tombstone re-allows the number.
        send(kafka_bootstrap, env.topics["dnc"], [(late.encode(), None)])
        await until(lambda: pipeline.dnc.lookup(late) is None)
        send(kafka_bootstrap, env.topics["contacts"], [(b"c2", event("c2", "415-555-0102"))])
        await until(lambda: len(env.batches) == 2)
        assert env.emitted_phones() == [fine, late]
        await until(lambda: pipeline.tracker.unsettled == 0)
        await until(lambda: committed(kafka_bootstrap, env.group, env.topics["contacts"])[0] == 4)
    audits = sorted(env.audits(2), key=lambda a: a["contact_id"])
    fields = ("contact_id", "reason", "check_stage", "list_name", "phone_e164")
    assert [tuple(a[f] for f in fields) for a in audits] == [
        ("c1", "DNC", "ARRIVAL", "national", None),  # no phone number on an output topic
        ("c2", "DNC", "FLUSH", "internal", None),
    ]
    assert audits[0]["source_topic"] == env.topics["contacts"] and audits[0]["source_offset"] == 0


async def test_opt_outs_cancel_and_duplicates_collapse(kafka_bootstrap: str, topic_factory) -> None:
    env = Env(kafka_bootstrap, topic_factory, publish_opt_outs=True, window={"max_age_s": 1.0})
    async with env.pipeline() as pipeline:
        send(kafka_bootstrap, env.topics["contacts"], [
            (b"c1", event("c1", "+14155550111")),
            (b"c2", event("c2", "+14155550112", first_name="first")),
            (b"c1", event("c1", "+14155550111", opted_in=False)),
            (b"c2", event("c2", "+14155550112", first_name="second")),
            (b"c3", event("c3", "+14155550113")),
            (b"c2", event("c2", "+14155550114", first_name="third")),
        ])
        await until(lambda: len(env.batches) == 1)
        assert env.emitted() == {"c2": "third", "c3": None}
        assert len(env.batches[0].contacts) == 2
        assert sorted(r.offset for r in env.batches[0].covered) == [1, 3, 4, 5]
        # The opt-out went to the DNC topic too, and the table follows it.
        await until(lambda: pipeline.dnc.lookup("+14155550111") == "crm-opt-out")
        await until(lambda: committed(kafka_bootstrap, env.group, env.topics["contacts"])[0] == 6)
    audits = env.audits(2)
    assert sorted((a["contact_id"], a["reason"], a["source_offset"]) for a in audits) == [
        ("c1", "OPTED_OUT", 0), ("c1", "OPTED_OUT", 2),
    ]


async def test_batches_respect_item_and_byte_limits(kafka_bootstrap: str, topic_factory) -> None:
    env = Env(kafka_bootstrap, topic_factory, window={"max_items": 3, "max_age_s": 0.5, "max_bytes": 700})
    async with env.pipeline():
        send(kafka_bootstrap, env.topics["contacts"], [
            (f"c{i}".encode(), event(f"c{i}", f"+1415555{i:04d}", first_name="n" * (60 if i % 2 else 5)))
            for i in range(200, 220)
        ])
        await until(lambda: sum(len(b.contacts) for b in env.batches) == 20)
    assert {b.flush_reason for b in env.batches} <= {"size", "bytes", "age", "shutdown"}
    assert {"size", "bytes"} & {b.flush_reason for b in env.batches}
    for batch in env.batches:
        assert 1 <= len(batch.contacts) <= 3
        assert batch_payload_bytes(batch.contacts) <= 700
    assert sorted(env.emitted()) == sorted(f"c{i}" for i in range(200, 220))


async def test_nothing_is_emitted_before_the_dnc_bootstrap(kafka_bootstrap: str, topic_factory) -> None:
    env = Env(kafka_bootstrap, topic_factory)
    blocked = "+14155550150"
    send(kafka_bootstrap, env.topics["dnc"], [(blocked.encode(), dnc_entry("national"))])
    send(kafka_bootstrap, env.topics["contacts"], [
        (b"c1", event("c1", blocked)), (b"c2", event("c2", "+14155550151")),
    ])
    gate = threading.Event()

    class GatedTable(DncTable):
        def add_many(self, pairs):  # type: ignore[no-untyped-def]
            gate.wait(10)
            return super().add_many(pairs)

    async with env.pipeline(table=GatedTable()) as pipeline:
        await asyncio.sleep(1.0)  # several max ages: the window would have flushed by now
        assert env.batches == []
        assert not pipeline.dnc.ready and not pipeline.assigned
        gate.set()
        await until(lambda: len(env.batches) == 1)
        assert env.emitted_phones() == ["+14155550151"]


async def test_committed_offset_never_passes_an_unsettled_record(kafka_bootstrap: str, topic_factory) -> None:
    env = Env(kafka_bootstrap, topic_factory, window={"max_items": 2})
    env.hold = lambda batch: any(r.offset == 0 for r in batch.covered)
    async with env.pipeline() as pipeline:
        send(kafka_bootstrap, env.topics["contacts"],
             [(f"c{i}".encode(), event(f"c{i}", f"+1415555{i:04d}")) for i in range(6)])
        await until(lambda: len(env.batches) == 3)
        await until(lambda: pipeline.tracker.unsettled == 2)
        await asyncio.sleep(0.4)  # several commit intervals
        assert committed(kafka_bootstrap, env.group, env.topics["contacts"])[0] < 0
        await pipeline.settle_batch(env.held[0])
        await until(lambda: committed(kafka_bootstrap, env.group, env.topics["contacts"])[0] == 6)


async def test_revoked_partition_is_neither_emitted_nor_committed(
    kafka_bootstrap: str, topic_factory
) -> None:
    env = Env(kafka_bootstrap, topic_factory, partitions=2, window={"max_age_s": 30.0})
    first = Env.__new__(Env)
    first.__dict__.update(env.__dict__)
    first.batches = []
    second = Env.__new__(Env)
    second.__dict__.update(env.__dict__)
    second.batches = []
    records = [(f"c{i}".encode(), event(f"c{i}", f"+1415555{i:04d}")) for i in range(8)]
    async with first.pipeline() as a:
        await until(lambda: len(a.assigned) == 2)
        for i, record in enumerate(records):
            send(kafka_bootstrap, env.topics["contacts"], [record], partition=i % 2)
        await until(lambda: len(a.window) == 8)
        async with second.pipeline() as b:
            await until(lambda: len(b.assigned) == 1 and len(a.assigned) == 1, timeout=14)
            moved = next(iter(b.assigned))[1]
            # A dropped the moved partition's buffer and committed nothing for it.
            assert len(a.window) == 4
            assert committed(kafka_bootstrap, env.group, env.topics["contacts"], 2)[moved] < 0
            await until(lambda: len(b.window) == 4)  # B reads the moved partition from the start
            await b.stop()  # flushes what B read again from the moved partition
        await a.stop()
    moved_contacts = {f"c{i}" for i in range(8) if i % 2 == moved}
    assert set(first.emitted()) == {f"c{i}" for i in range(8)} - moved_contacts
    assert set(second.emitted()) == moved_contacts


async def test_bad_input_goes_to_the_dlq_and_the_pipeline_keeps_going(
    kafka_bootstrap: str, topic_factory
) -> None:
    env = Env(kafka_bootstrap, topic_factory)
    good = event("ok", "+14155550160")
    marker = b"PHONE-MARKER"
    non_utf8 = event("c5", marker.decode()).replace(marker, b"\xff\xfe\x00\xc3(\xa0\xa1\xff\xfe\x80\xbf\xc0")
    bad = [
        (b"c1", good[:7]),                                                  # truncated Avro
        (b"c2", dnc_entry("national")),                                     # another schema
        (b"c3", event("c3", "12")),                                         # impossible number
        (b"c4", event("c4", "+14155550164", first_name="x" * 10_000)),      # a 10 kB name
        (b"c5", non_utf8),                                                  # phone not UTF-8
        (b"", event("c6", "+14155550166")),                                 # empty key
        (b"c7", None),                                                      # null value
    ]
    send(kafka_bootstrap, env.topics["dnc"], [(b"call-me", dnc_entry("national"))])
    async with env.pipeline() as pipeline:
        send(kafka_bootstrap, env.topics["contacts"], [*bad, (b"ok", good)])
        await until(lambda: len(env.batches) == 1)
        assert env.emitted_phones() == ["+14155550160"]
        await until(lambda: committed(kafka_bootstrap, env.group, env.topics["contacts"])[0] == 8)
        assert pipeline.stats.dead_lettered == 7
    letters = read_topic(kafka_bootstrap, env.topics["dlq"], 8)
    by_offset = {}
    for msg in letters:
        headers = dlq.header_dict(msg.headers())
        by_offset[(headers[dlq.TOPIC], int(headers[dlq.OFFSET]))] = (msg, headers)
    contacts = env.topics["contacts"]
    stages = {off: by_offset[(contacts, off)][1][dlq.STAGE] for off in range(7)}
    assert stages == {0: "decode", 1: "decode", 2: "normalise", 3: "validate", 4: "decode",
                      5: "validate", 6: "validate"}
    msg0, h0 = by_offset[(contacts, 0)]
    assert msg0.value() == good[:7] and msg0.key() == b"c1"
    assert h0[dlq.EXCEPTION_CLASS] == "connector.errors.SerdeError"
    assert h0[dlq.EXCEPTION_MESSAGE].startswith("truncated")
    assert by_offset[(contacts, 2)][1][dlq.EXCEPTION_MESSAGE].startswith("not_possible")
    assert "first_name longer than 256" in by_offset[(contacts, 3)][1][dlq.EXCEPTION_MESSAGE]
    assert "non-UTF-8" in by_offset[(contacts, 4)][1][dlq.EXCEPTION_MESSAGE]
    assert by_offset[(contacts, 5)][1][dlq.EXCEPTION_MESSAGE] == "empty key"
    assert by_offset[(contacts, 6)][1][dlq.EXCEPTION_MESSAGE] == "null value"
    dnc_letter = by_offset[(env.topics["dnc"], 0)]
    assert dnc_letter[0].key() == b"call-me" and dnc_letter[1][dlq.STAGE] == "dnc"


async def test_backpressure_pauses_over_the_unsettled_limit(kafka_bootstrap: str, topic_factory) -> None:
    env = Env(kafka_bootstrap, topic_factory, max_unsettled=10, consume_batch_size=5,
              window={"max_items": 5, "max_age_s": 0.1})
    held = True
    env.hold = lambda _batch: held
    async with env.pipeline() as pipeline:
        send(kafka_bootstrap, env.topics["contacts"],
             [(f"c{i}".encode(), event(f"c{i}", f"+1415555{i:04d}")) for i in range(40)])
        await until(lambda: pipeline.paused)
        await asyncio.sleep(0.5)
        assert pipeline.paused
        assert 10 <= pipeline.tracker.unsettled <= 15  # the limit plus at most one consumed batch
        held = False
        for batch in list(env.held):
            await pipeline.settle_batch(batch)
        await until(lambda: sum(len(b.contacts) for b in env.batches) == 40)
        await until(lambda: not pipeline.paused)
        await until(lambda: committed(kafka_bootstrap, env.group, env.topics["contacts"])[0] == 40)


async def test_stop_windows_the_lists_still_in_the_workers(kafka_bootstrap: str, topic_factory) -> None:
    """Records handed to a worker are tracked: a stop waits for their results, windows them,
    flushes, and commits all of them (nothing left unsettled to wait for)."""
    env = Env(kafka_bootstrap, topic_factory, consume_batch_size=50, workers=1, window={"max_age_s": 30})
    send(kafka_bootstrap, env.topics["contacts"],
         [(f"c{i}".encode(), event(f"c{i}", f"+1415555{i:04d}")) for i in range(3000)])
    async with env.pipeline() as pipeline:
        await until(lambda: pipeline.stats.consumed >= 500)
        await pipeline.stop(deadline_s=20)
        consumed = pipeline.stats.consumed
        assert pipeline.in_flight == 0
        assert pipeline.tracker.unsettled == 0
        assert sum(len(b.covered) for b in env.batches) == consumed
    assert committed(kafka_bootstrap, env.group, env.topics["contacts"])[0] == consumed


async def test_two_workers_keep_consume_order_when_record_keys_are_not_contact_ids(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    # The keys (event ids) spread one contact's records over both decode lanes; the window must
    # still see them in consume order, so the newest write of each contact wins.
    env = Env(kafka_bootstrap, topic_factory, window={"max_age_s": 0.5}, workers=2, consume_batch_size=500)
    contacts = [f"c{i}" for i in range(20)]
    records: list[tuple[bytes | None, bytes | None]] = []
    for round_ in range(10):
        for i, contact in enumerate(contacts):
            last = round_ == 9
            opted_in = not last if i % 2 else True  # odd contacts end with an opt-out
            records.append((f"k-{round_}-{i}".encode(),
                            event(contact, f"+1415555{i:04d}", opted_in=opted_in, first_name=f"r{round_}")))
    send(kafka_bootstrap, env.topics["contacts"], records, partition=0)
    async with env.pipeline() as pipeline:
        await until(lambda: pipeline.tracker.unsettled == 0 and pipeline.stats.consumed >= len(records), 20)
    emitted_last: dict[str, str | None] = {}
    for batch in env.batches:
        for contact in batch.contacts:
            emitted_last[contact.contact_id] = contact.first_name
    odd = {c for i, c in enumerate(contacts) if i % 2}
    # an opted-out contact may have had an earlier batch, but never one after its opt-out's flush
    assert all(emitted_last.get(c) == "r9" for c in contacts if c not in odd)
    last_batch_of = {c.contact_id: n for n, b in enumerate(env.batches) for c in b.contacts}
    final_batch = len(env.batches) - 1
    assert not any(last_batch_of.get(c) == final_batch and emitted_last[c] == "r9" for c in odd)


async def test_a_schema_registry_that_answers_503_pauses_decoding_and_never_dead_letters(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    registry = FakeRegistry()
    try:
        sid = RegistryClient(registry.url).register("contacts-value", raw_schema("ContactOptInChanged"))
        registry.fail_ids, registry.fail_status = {sid}, 503
        env = Env(kafka_bootstrap, topic_factory, window={"max_age_s": 0.3}, workers=0)
        env.settings = dataclasses.replace(env.settings, kafka=dataclasses.replace(
            env.settings.kafka, value_format="confluent", schema_registry_url=registry.url))
        framed = AvroCodec("ContactOptInChanged", wire_format="confluent", schema_id=sid)
        records = [(f"c{i}".encode(), framed.encode(CONTACT.decode(event(f"c{i}", f"+1415555{i:04d}"))))
                   for i in range(3)]
        send(kafka_bootstrap, env.topics["contacts"], records)
        async with env.pipeline() as pipeline:
            await until(lambda: pipeline.registry_unavailable and len(registry.gets) >= 2, timeout=15)
            assert env.batches == [] and pipeline.stats.dead_lettered == 0
            registry.fail_ids = set()  # the registry recovers
            await until(lambda: len(env.emitted_phones()) == 3 and pipeline.tracker.unsettled == 0, timeout=20)
            assert not pipeline.registry_unavailable and pipeline.stats.dead_lettered == 0
        assert read_topic(kafka_bootstrap, env.topics["dlq"], 1, timeout=1.0) == []
    finally:
        registry.close()
