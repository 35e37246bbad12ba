"""DncSource on the real broker: bootstrap to the start-up watermarks, tombstones, live updates,
transaction markers, bad records to the DLQ."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from connector.core.dnc_table import DncTable
from connector.kafka import dlq_headers as dlq
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.dnc_source import DncSource
from connector.kafka.exceptions import DncBootstrapError
from connector.kafka.producer import AsyncProducer
from connector.serde.codec import AvroCodec, frame

pytestmark = pytest.mark.kafka

COMPACT = {"cleanup.policy": "compact"}
CODEC = AvroCodec("DncEntry")


def entry(list_name: str) -> bytes:
    return CODEC.encode({"list_name": list_name, "added_at": 1_700_000_000_000})


def config(bootstrap: str) -> dict[str, str]:
    return {"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"}


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]],
            partitions: int = 1) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    errors: list = []

    def on_delivery(err, _msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            errors.append(err)

    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, partition=i % partitions, on_delivery=on_delivery)
    assert producer.flush(10) == 0
    assert errors == []


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list:
    consumer = Consumer(config(bootstrap))
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            out += [m for m in consumer.consume(100, 0.2) if m.error() is None]
    finally:
        consumer.close()
    return out


async def wait_for(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_empty_topic_is_ready_at_once(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", partitions=3, config=COMPACT)
    source = DncSource(config(kafka_bootstrap), topic)
    await source.start()
    try:
        await source.wait_ready(timeout=10)
        assert source.ready
        assert len(source) == 0
        assert source.bootstrap_seconds is not None and source.bootstrap_records == 0
    finally:
        await source.close()


async def test_bootstrap_applies_topic_in_order(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", partitions=1, config=COMPACT)
    numbers = [f"+1415555{i:04d}" for i in range(300)]
    records: list[tuple[bytes | None, bytes | None]] = [(n.encode(), entry("national")) for n in numbers]
    records += [
        (numbers[0].encode(), None),                  # tombstone: re-allowed
        (numbers[1].encode(), entry("internal")),     # moved to another list
        (numbers[2].encode(), None),                  # removed then added again
        (numbers[2].encode(), entry("internal")),
        (b"+4420794600" + b"00", None),               # tombstone for an absent number
    ]
    produce(kafka_bootstrap, topic, records)

    class SlowTable(DncTable):
        """Slows every chunk so readiness can only come after the last one is applied."""

        def add_many(self, pairs):  # type: ignore[no-untyped-def]
            time.sleep(0.01)
            return super().add_many(pairs)

    table = SlowTable()
    source = DncSource(config(kafka_bootstrap), topic, table, batch_size=50, chunk_size=20)
    await source.start()
    try:
        await source.wait_ready(timeout=10)
        assert source.bootstrap_records == len(records)
        assert len(source) == 299
        assert source.lookup(numbers[0]) is None
        assert source.lookup(numbers[1]) == "internal"
        assert source.lookup(numbers[2]) == "internal"
        assert source.lookup(numbers[3]) == "national"
        assert source.lookup("+14155559999") is None
        assert source.lookup("not a number") is None
        assert source.removed == 3 and source.rejected == 0
    finally:
        await source.close()


async def test_bootstrap_across_partitions_then_follows_live(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", partitions=3, config=COMPACT)
    produce(kafka_bootstrap, topic, [(f"+4420794600{i:02d}".encode(), entry("uk")) for i in range(30)],
            partitions=3)
    source = DncSource(config(kafka_bootstrap), topic, poll_timeout_s=0.05)
    await source.start()
    try:
        await source.wait_ready(timeout=10)
        assert len(source) == 30
        # Live: an addition and a tombstone become visible to the loop promptly.
        produce(kafka_bootstrap, topic, [(b"+14155550123", entry("late")), (b"+442079460005", None)])
        await wait_for(lambda: source.lookup("+14155550123") == "late")
        await wait_for(lambda: source.lookup("+442079460005") is None)
        assert len(source) == 30
    finally:
        await source.close()


async def test_transaction_markers_do_not_stall_bootstrap(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", partitions=2, config=COMPACT)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    for i in range(6):
        producer.produce(topic, key=f"+1415555{i:04d}".encode(), value=entry("txn"), partition=i % 2)
    producer.commit_transaction(10)
    # The aborted transaction comes from a second producer: aborting right after a commit on
    # the same one failed now and then on a fresh Kafka 4.1 broker (fatal INVALID_TXN_STATE).
    aborting = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    aborting.init_transactions(10)
    aborting.begin_transaction()
    aborting.produce(topic, key=b"+14155559999", value=entry("aborted"), partition=0)
    aborting.flush(10)  # on the broker, inside the transaction, before the abort
    aborting.abort_transaction(10)
    # Each partition now ends with a control record: the last data offset + 1 < high watermark.
    source = DncSource(config(kafka_bootstrap), topic)
    await source.start()
    try:
        await source.wait_ready(timeout=10)
        assert len(source) == 6
        assert source.lookup("+14155559999") is None  # aborted: never visible (read_committed)
    finally:
        await source.close()


async def test_bad_records_go_to_the_dlq_and_bootstrap_continues(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    dlq_topic = topic_factory("dlq")
    produce(kafka_bootstrap, topic, [
        (b"+14155550100", entry("ok")),
        (b"4155550101", entry("ok")),           # not E.164: no '+'
        (b"call-me", entry("ok")),              # not a number at all
        (b"+14155550102", b"\x08ab"),           # truncated Avro value
        (b"\xff\xfe", entry("ok")),             # not even UTF-8
        (b"+14155550103", entry("ok")),
    ])
    producer = AsyncProducer({"bootstrap.servers": kafka_bootstrap})
    await producer.start()
    source = DncSource(config(kafka_bootstrap), topic, dead_letters=DeadLetterWriter(producer, dlq_topic))
    await source.start()
    try:
        await source.wait_ready(timeout=10)
        assert len(source) == 2
        assert source.lookup("+14155550103") == "ok"
        assert source.rejected == 4
        async with asyncio.timeout(10):
            while producer.in_flight or source._dlq_slots._value < 10_000:
                await asyncio.sleep(0.02)
    finally:
        await source.close()
        await producer.close()
    letters = read_topic(kafka_bootstrap, dlq_topic, 4)
    assert [m.key() for m in letters] == [b"4155550101", b"call-me", b"+14155550102", b"\xff\xfe"]
    headers = [dlq.header_dict(m.headers()) for m in letters]
    assert {h[dlq.STAGE] for h in headers} == {"dnc"}
    assert [h[dlq.OFFSET] for h in headers] == ["1", "2", "3", "4"]
    assert all(h[dlq.TOPIC] == topic for h in headers)
    assert headers[0][dlq.EXCEPTION_MESSAGE] == "DNC key is not an E.164 number"
    assert headers[2][dlq.EXCEPTION_CLASS] == "connector.errors.SerdeError"
    assert headers[2][dlq.EXCEPTION_MESSAGE].startswith("truncated")
    assert letters[2].value() == b"\x08ab"


async def test_confluent_framed_values(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    produce(kafka_bootstrap, topic, [(b"+14155550100", frame(7, entry("framed"))),
                                     (b"+14155550101", entry("plain"))])
    source = DncSource(config(kafka_bootstrap), topic, value_format="auto")
    await source.start()
    try:
        await source.wait_ready(timeout=10)
        assert source.lookup("+14155550100") == "framed"
        assert source.lookup("+14155550101") == "plain"
    finally:
        await source.close()


async def test_missing_topic_fails_the_bootstrap(kafka_bootstrap: str) -> None:
    source = DncSource(config(kafka_bootstrap), f"test.missing.{uuid.uuid4().hex}", metadata_timeout_s=2)
    await source.start()
    try:
        with pytest.raises(DncBootstrapError):
            await source.wait_ready(timeout=10)
        assert not source.ready
    finally:
        await source.close()


async def test_lookup_is_safe_while_the_thread_writes(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    number = "+14155550177"
    # The number moves between two lists many times; a reader must never see it unblocked.
    produce(kafka_bootstrap, topic, [(number.encode(), entry("a" if i % 2 else "b")) for i in range(2000)])
    source = DncSource(config(kafka_bootstrap), topic, batch_size=7, chunk_size=3)
    misses = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal misses
        seen_once = False
        while not stop.is_set():
            found = source.lookup(number)
            seen_once = seen_once or found is not None
            if seen_once and found is None:
                misses += 1

    thread = threading.Thread(target=reader)
    thread.start()
    await source.start()
    try:
        await source.wait_ready(timeout=10)
    finally:
        stop.set()
        thread.join()
        await source.close()
    assert source.lookup(number) == "a"
    assert misses == 0
