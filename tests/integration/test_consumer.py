"""ConsumerThread on the real broker: hand-off, commits, pauses, cooperative rebalances."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping

import pytest
from confluent_kafka import Message, Producer
from kafka_helpers import committed_offsets

from connector.core.models import TP
from connector.kafka.consumer import ConsumerThread
from connector.kafka.exceptions import ConsumeError

pytestmark = pytest.mark.kafka


class Recorder:
    """A rebalance listener that records calls and returns preset offsets on revoke."""

    def __init__(self, on_revoke_offsets: Mapping[TP, int] | None = None) -> None:
        self.assigned: list[list[TP]] = []
        self.revoked: list[list[TP]] = []
        self.lost: list[list[TP]] = []
        self.offsets = dict(on_revoke_offsets or {})

    def on_assigned(self, tps: list[TP]) -> None:
        self.assigned.append(tps)

    async def on_revoked(self, tps: list[TP]) -> Mapping[TP, int]:
        self.revoked.append(tps)
        return {tp: off for tp, off in self.offsets.items() if tp in tps}

    def on_lost(self, tps: list[TP]) -> None:
        self.lost.append(tps)


def group_config(bootstrap: str, group: str) -> dict[str, str]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "heartbeat.interval.ms": "300",
        "session.timeout.ms": "6000",
    }


def produce(bootstrap: str, topic: str, count: int, partitions: int = 1, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for i in range(start, start + count):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % partitions)
    assert producer.flush(10) == 0


def committed(bootstrap: str, group: str, tps: list[TP]) -> dict[TP, int]:
    return committed_offsets(bootstrap, group, tps)


async def collect(consumer: ConsumerThread, count: int, timeout: float = 10.0) -> list[Message]:
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out += await consumer.get_batch(timeout=1.0)
    return out


async def test_consume_commit_and_health(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("in", partitions=2)
    produce(kafka_bootstrap, topic, 20, partitions=2)
    group = f"t-{uuid.uuid4().hex}"
    listener = Recorder()
    stats: list[str] = []
    consumer = ConsumerThread(group_config(kafka_bootstrap, group), [topic], listener, batch_size=7,
                              poll_timeout_s=0.05, stats_cb=stats.append, statistics_interval_ms=100)
    await consumer.start()
    try:
        messages = await collect(consumer, 20)
        assert len(messages) == 20
        assert sorted(m.value() for m in messages) == sorted(f"v{i}".encode() for i in range(20))
        assert consumer.assignment == {(topic, 0), (topic, 1)}
        assert [sorted(a) for a in listener.assigned] == [[(topic, 0), (topic, 1)]]
        assert consumer.last_poll > 0
        done = await consumer.commit({(topic, 0): 4, (topic, 1): 10, ("not.assigned", 0): 1})
        assert done == {(topic, 0): 4, (topic, 1): 10}
        async with asyncio.timeout(5):
            while not stats:
                await asyncio.sleep(0.05)
        assert json.loads(stats[-1])["type"] == "consumer"
    finally:
        await consumer.close()
    assert committed(kafka_bootstrap, group, [(topic, 0), (topic, 1)]) == {(topic, 0): 4, (topic, 1): 10}
    assert consumer.failure is None
    with pytest.raises(ConsumeError):
        await consumer.commit({(topic, 0): 5})


async def test_pause_all_stops_delivery_until_resume(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("in", partitions=2)
    group = f"t-{uuid.uuid4().hex}"
    consumer = ConsumerThread(group_config(kafka_bootstrap, group), [topic], poll_timeout_s=0.05)
    await consumer.start()
    try:
        produce(kafka_bootstrap, topic, 4, partitions=2)
        assert len(await collect(consumer, 4)) == 4
        await consumer.pause()
        assert consumer.paused
        produce(kafka_bootstrap, topic, 6, partitions=2, start=4)
        assert await consumer.get_batch(timeout=1.0) == []
        await consumer.resume()
        later = await collect(consumer, 6)
        assert sorted(m.value() for m in later) == sorted(f"v{i}".encode() for i in range(4, 10))
    finally:
        await consumer.close()


async def test_flow_pause_bounds_the_hand_off(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("in")
    produce(kafka_bootstrap, topic, 12)
    consumer = ConsumerThread(group_config(kafka_bootstrap, f"t-{uuid.uuid4().hex}"), [topic],
                              batch_size=1, max_pending_batches=2, poll_timeout_s=0.05)
    await consumer.start()
    try:
        await asyncio.sleep(1.5)  # the loop takes nothing meanwhile
        assert consumer._queue.qsize() <= 3  # 2 pending, plus at most one fetched before the pause
        messages = await collect(consumer, 12)
        assert [m.value() for m in messages] == [f"v{i}".encode() for i in range(12)]
    finally:
        await consumer.close()


async def test_a_loop_that_stays_behind_gets_a_flow_pause_after_the_hold(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("in")
    produce(kafka_bootstrap, topic, 12)
    consumer = ConsumerThread(group_config(kafka_bootstrap, f"t-{uuid.uuid4().hex}"), [topic],
                              batch_size=1, max_pending_batches=2, poll_timeout_s=0.05, flow_hold_s=0.5)
    await consumer.start()
    try:
        async with asyncio.timeout(10):
            while consumer._queue.qsize() < 2:
                await asyncio.sleep(0.02)
        polled = consumer.last_poll
        await asyncio.sleep(0.2)  # holding: no pause yet, but the thread is alive
        assert not consumer._pausing.flow_paused
        assert consumer.last_poll > polled
        async with asyncio.timeout(5):
            while not consumer._pausing.flow_paused:  # held longer than flow_hold_s: paused, polling on
                await asyncio.sleep(0.05)
        messages = await collect(consumer, 12)
        assert [m.value() for m in messages] == [f"v{i}".encode() for i in range(12)]
    finally:
        await consumer.close()


async def test_cooperative_revoke_commits_listener_offsets_and_drops_queue(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = topic_factory("in", partitions=2)
    produce(kafka_bootstrap, topic, 10, partitions=2)
    group = f"t-{uuid.uuid4().hex}"
    first = Recorder(on_revoke_offsets={(topic, 0): 2, (topic, 1): 3})
    a = ConsumerThread(group_config(kafka_bootstrap, group), [topic], first, poll_timeout_s=0.05)
    second = Recorder()
    b = ConsumerThread(group_config(kafka_bootstrap, group), [topic], second, poll_timeout_s=0.05)
    await a.start()
    try:
        async with asyncio.timeout(10):
            while len(a.assignment) < 2 or a._queue.qsize() == 0:
                await asyncio.sleep(0.05)
        # A leaves its records queued; B joins; cooperative-sticky moves exactly one partition.
        await b.start()
        async with asyncio.timeout(14):
            while not b.assignment:
                await asyncio.sleep(0.05)
        assert len(first.revoked) == 1 and len(first.revoked[0]) == 1
        moved = first.revoked[0][0]
        kept = ({(topic, 0), (topic, 1)} - {moved}).pop()
        assert a.assignment == {kept} and b.assignment == {moved}
        assert first.lost == []
        # The moved partition's queued records never reach A's loop.
        remaining = await collect(a, 5)
        assert {(m.topic(), m.partition()) for m in remaining} == {kept}
        # Only the revoked partition's offset was committed, before the revoke completed.
        assert committed(kafka_bootstrap, group, [moved])[moved] == first.offsets[moved]
        assert committed(kafka_bootstrap, group, [kept])[kept] < 0  # nothing committed
        # B starts where A's commit left off.
        resumed = await collect(b, 5 - first.offsets[moved])
        assert min(m.offset() for m in resumed) == first.offsets[moved]
    finally:
        await b.close()
        await a.close()


async def test_bad_config_fails_start() -> None:
    consumer = ConsumerThread({"bootstrap.servers": "127.0.0.1:9092", "no.such.setting": "1"}, ["t"])
    with pytest.raises(ConsumeError):
        await consumer.start()
