"""DncSource on the real broker: bootstrap to the start-up watermarks, tombstones, live updates,
transaction markers, bad records, a number on several lists, and failing closed (a thread that
dies, a broker that is not there yet, a topic that goes away, partitions added later)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from dnc_helpers import COMPACT, config, entry, free_port, produce, proxy, read_topic, wait_for

from connector.core.dnc_table import DncTable
from connector.kafka import dlq_headers as dlq
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.dnc_source import DncSource
from connector.kafka.exceptions import DncBootstrapError
from connector.kafka.producer import AsyncProducer
from connector.ops.metrics import Metrics
from connector.serde.codec import frame

pytestmark = pytest.mark.kafka


async def test_empty_topic_is_ready_at_once(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", partitions=3, config=COMPACT)
    source = DncSource(config(kafka_bootstrap), topic)
    assert not source.currency().current  # not started
    await source.start()
    try:
        await source.wait_ready(timeout=30)
        assert source.ready
        assert len(source) == 0
        assert source.bootstrap_seconds is not None and source.bootstrap_records == 0
        await wait_for(lambda: source.currency().current)
        assert source.currency().not_current_since is None
    finally:
        await source.close()
    assert not source.currency().current  # closed


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
    source = DncSource(config(kafka_bootstrap), topic, table, batch_size=50)
    await source.start()
    try:
        await source.wait_ready(timeout=30)
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
        await source.wait_ready(timeout=30)
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
        await source.wait_ready(timeout=30)
        assert len(source) == 6
        assert source.lookup("+14155559999") is None  # aborted: never visible (read_committed)
    finally:
        await source.close()


async def test_bad_records_block_or_go_to_the_dlq_and_bootstrap_continues(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    dlq_topic = topic_factory("dlq")
    produce(kafka_bootstrap, topic, [
        (b"+14155550100", entry("ok")),
        (b"4155550101", entry("ok")),           # national spelling: normalised (US), blocked
        (b"call-me", entry("ok")),              # not a number at all: DLQ
        (b"+14155550102", b"\x08ab"),           # truncated Avro value: blocked as unreadable, DLQ
        (b"\xff\xfe", entry("ok")),             # not even UTF-8: DLQ
        (b"+14155550103", entry("ok")),
        (b"national/+14155550104", b"\x02"),    # keyed, unreadable: blocked as unreadable, DLQ
    ])
    producer = AsyncProducer({"bootstrap.servers": kafka_bootstrap})
    await producer.start()
    metrics = Metrics()
    source = DncSource(config(kafka_bootstrap), topic, dead_letters=DeadLetterWriter(producer, dlq_topic),
                       metrics=metrics, unreadable_list="unreadable")
    await source.start()
    try:
        await source.wait_ready(timeout=30)
        assert source.lookup("+14155550101") == "ok"
        assert source.lookup("+14155550102") == "unreadable"
        assert source.lists_of("+14155550104") == ("unreadable",)
        assert len(source) == 5
        assert source.rejected == 4
        async with asyncio.timeout(10):
            while producer.in_flight or source._letters.slots._value < 10_000:
                await asyncio.sleep(0.02)
    finally:
        await source.close()
        await producer.close()
    rejected = metrics.registry.get_sample_value
    assert rejected("cxone_connector_dnc_records_rejected_total", {"reason": "not_a_number"}) == 1
    assert rejected("cxone_connector_dnc_records_rejected_total", {"reason": "unreadable"}) == 2
    assert rejected("cxone_connector_dnc_records_rejected_total", {"reason": "not_utf8"}) == 1
    letters = read_topic(kafka_bootstrap, dlq_topic, 4)
    assert [m.key() for m in letters] == [b"call-me", b"+14155550102", b"\xff\xfe", b"national/+14155550104"]
    headers = [dlq.header_dict(m.headers()) for m in letters]
    assert {h[dlq.STAGE] for h in headers} == {"dnc"}
    assert [h[dlq.OFFSET] for h in headers] == ["2", "3", "4", "6"]
    assert all(h[dlq.TOPIC] == topic for h in headers)
    assert headers[0][dlq.EXCEPTION_MESSAGE] == "DNC key holds no valid phone number"
    assert headers[1][dlq.EXCEPTION_CLASS] == "connector.errors.SerdeError"
    assert headers[1][dlq.EXCEPTION_MESSAGE].startswith("truncated")
    assert letters[1].value() == b"\x08ab"


async def test_confluent_framed_values(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    produce(kafka_bootstrap, topic, [(b"+14155550100", frame(7, entry("framed"))),
                                     (b"+14155550101", entry("plain"))])
    source = DncSource(config(kafka_bootstrap), topic, value_format="auto")
    await source.start()
    try:
        await source.wait_ready(timeout=30)
        assert source.lookup("+14155550100") == "framed"
        assert source.lookup("+14155550101") == "plain"
    finally:
        await source.close()


async def test_a_missing_topic_is_waited_for_not_current_and_picked_up_once_created(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory
) -> None:
    name = f"test.dnc-missing.{uuid.uuid4().hex[:8]}"
    source = DncSource(config(kafka_bootstrap), name, metadata_timeout_s=1)
    await source.start()
    try:
        with pytest.raises(DncBootstrapError) as info:
            await source.wait_ready(timeout=2)
        assert info.value.retriable
        verdict = source.currency()
        assert not verdict.current and "waiting for the topic" in verdict.reason
        assert verdict.not_current_since is not None
        assert not source.ready and source.failure is None  # waiting, not failed
        kafka_admin.create_topics([NewTopic(name, 1, 1, config=COMPACT)])[name].result(timeout=30)
        produce(kafka_bootstrap, name, [(b"national/+14155550100", entry("national"))])
        await source.wait_ready(timeout=30)
        await wait_for(lambda: source.currency().current)
        assert source.lookup("+14155550100") == "national"
    finally:
        await source.close()
        kafka_admin.delete_topics([name])


async def test_lookup_is_safe_while_the_thread_writes(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    number = "+14155550177"
    # The number moves between two lists many times; a reader must never see it unblocked.
    produce(kafka_bootstrap, topic, [(number.encode(), entry("a" if i % 2 else "b")) for i in range(2000)])
    source = DncSource(config(kafka_bootstrap), topic, batch_size=7)
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
        await source.wait_ready(timeout=30)
    finally:
        stop.set()
        thread.join()
        await source.close()
    assert source.lookup(number) == "a"
    assert misses == 0


async def test_a_number_on_two_lists_stays_blocked_after_one_tombstone(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", partitions=2, config=COMPACT)
    number = "+14155550170"
    produce(kafka_bootstrap, topic, [(f"crm-opt-out/{number}".encode(), entry("crm-opt-out")),
                                     (f"national/{number}".encode(), entry("national"))], partitions=2)
    source = DncSource(config(kafka_bootstrap), topic, poll_timeout_s=0.05)
    await source.start()
    try:
        await source.wait_ready(timeout=30)
        assert source.lists_of(number) == ("crm-opt-out", "national")
        produce(kafka_bootstrap, topic, [(f"national/{number}".encode(), None)])  # the registry drops it
        await wait_for(lambda: source.lists_of(number) == ("crm-opt-out",))
        assert source.lookup(number) == "crm-opt-out" and source.lookup_many([number]) == {number: "crm-opt-out"}
        produce(kafka_bootstrap, topic, [(f"crm-opt-out/{number}".encode(), None)])
        await wait_for(lambda: source.lookup(number) is None)
        assert source.lists_of(number) == ()
    finally:
        await source.close()


class FailingTable(DncTable):
    """Raises on the first live write: the materialiser thread dies after its bootstrap."""

    armed = False

    def apply(self, ops):  # type: ignore[no-untyped-def]
        if self.armed:
            raise RuntimeError("injected")
        super().apply(ops)


async def test_a_thread_that_dies_makes_the_table_not_current(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    produce(kafka_bootstrap, topic, [(b"national/+14155550180", entry("national"))])
    table = FailingTable()
    source = DncSource(config(kafka_bootstrap), topic, table, poll_timeout_s=0.05)
    await source.start()
    try:
        await source.wait_ready(timeout=30)
        await wait_for(lambda: source.currency().current)
        table.armed = True
        produce(kafka_bootstrap, topic, [(b"national/+14155550181", entry("national"))])
        await wait_for(lambda: not source.currency().current)
        verdict = source.currency()
        assert "stopped" in verdict.reason and verdict.not_current_since is not None
        assert not source.ready
        assert source.failure is not None and not source.failure.retriable
        assert source.lookup("+14155550180") == "national"  # look-ups still answer
    finally:
        await source.close()


async def test_a_broker_down_at_start_up_is_waited_for_then_followed(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    produce(kafka_bootstrap, topic, [(b"national/+14155550190", entry("national"))])
    port = free_port()  # nothing listens there yet: the "broker" is down
    source = DncSource(config(f"127.0.0.1:{port}"), topic, metadata_timeout_s=0.5)
    await source.start()
    try:
        await asyncio.sleep(2.0)  # several failed start-up attempts
        verdict = source.currency()
        assert not verdict.current and "waiting for the topic" in verdict.reason
        assert source.failure is None and source._thread is not None and source._thread.is_alive()
        async with proxy(port, kafka_bootstrap):  # the broker comes back
            await source.wait_ready(timeout=30)
            await wait_for(lambda: source.currency().current)
            assert source.lookup("+14155550190") == "national"
    finally:
        await source.close()


async def test_a_topic_that_goes_away_makes_the_table_not_current(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory
) -> None:
    topic = topic_factory("dnc", partitions=2, config=COMPACT)
    produce(kafka_bootstrap, topic, [(b"national/+14155550200", entry("national"))])
    metrics = Metrics()
    source = DncSource(config(kafka_bootstrap), topic, max_stall_s=5.0, metadata_interval_s=0.5,
                       poll_timeout_s=0.05, metrics=metrics)
    await source.start()
    try:
        await source.wait_ready(timeout=30)
        await wait_for(lambda: source.currency().current)
        await asyncio.sleep(6.0)  # idle partitions stay current: probes keep proving fetches
        assert source.currency().current
        assert metrics.registry.get_sample_value("cxone_connector_dnc_current") == 1
        kafka_admin.delete_topics([topic])[topic].result(timeout=30)  # fetches now get error answers
        await wait_for(lambda: not source.currency().current, timeout=20)
        assert "no successful fetch" in source.currency().reason
        assert source.failure is None  # waited for, not a crash
        assert source.lookup("+14155550200") == "national"  # nothing is unblocked meanwhile
        await wait_for(lambda: metrics.registry.get_sample_value("cxone_connector_dnc_current") == 0)
    finally:
        await source.close()


class GatedTable(DncTable):
    """Blocks the write of one number until the gate opens."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number
        self.gate = threading.Event()

    def apply(self, ops):  # type: ignore[no-untyped-def]
        ops = list(ops)
        if any(self.number in op.numbers for op in ops):
            self.gate.wait(30)
        super().apply(ops)


async def test_a_partition_added_while_running_is_read_from_0_and_holds_readiness(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory
) -> None:
    topic = topic_factory("dnc", partitions=1, config=COMPACT)
    produce(kafka_bootstrap, topic, [(b"national/+14155550210", entry("national"))])
    table = GatedTable(14155550211)
    source = DncSource(config(kafka_bootstrap), topic, table, metadata_interval_s=0.3, poll_timeout_s=0.05)
    await source.start()
    try:
        await source.wait_ready(timeout=30)
        await wait_for(lambda: source.currency().current)
        kafka_admin.create_partitions([NewPartitions(topic, 2)])[topic].result(timeout=30)
        # written before the connector sees the partition: it must read it from offset 0
        produce(kafka_bootstrap, topic, [(b"national/+14155550211", entry("national")),
                                         (b"national/+14155550212", entry("national"))], partition=1)
        await wait_for(lambda: not source.ready, timeout=20)
        verdict = source.currency()
        assert not verdict.current and "catching up: 1 of 2" in verdict.reason
        table.gate.set()
        await wait_for(lambda: source.ready and source.currency().current, timeout=20)
        assert source.lookup("+14155550211") == "national" and source.lookup("+14155550212") == "national"
    finally:
        table.gate.set()
        await source.close()


async def test_an_expired_entry_stops_blocking_while_another_list_still_blocks(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = topic_factory("dnc", config=COMPACT)
    now = [1_800_000_000.0]  # the injected wall clock (epoch seconds)
    expires = int(now[0] * 1000) + 60_000
    number, other = "+14155550220", "+14155550221"
    produce(kafka_bootstrap, topic, [
        (f"national/{number}".encode(), entry("national")),
        (f"temporary/{number}".encode(), entry("temporary", expires_at=expires)),
        (f"temporary/{other}".encode(), entry("temporary", expires_at=expires)),
        (b"temporary/+14155550222", entry("temporary", expires_at=expires - 120_000)),  # expired already
    ])
    source = DncSource(config(kafka_bootstrap), topic, poll_timeout_s=0.05, wall_clock=lambda: now[0])
    await source.start()
    try:
        await source.wait_ready(timeout=30)
        assert source.lists_of(number) == ("national", "temporary")
        assert source.lookup(other) == "temporary"
        assert source.lookup("+14155550222") is None
        now[0] += 61.0  # past expires_at
        await wait_for(lambda: source.lookup(other) is None)
        assert source.lists_of(number) == ("national",)  # blocked by one list, expired on the other
    finally:
        await source.close()
