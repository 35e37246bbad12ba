"""AsyncProducer on the real broker: acknowledgements, headers, latched delivery errors."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_helpers import TcpProxy, free_port

from connector.kafka.exceptions import ProduceError
from connector.kafka.producer import AsyncProducer
from connector.ops.metrics import Metrics

pytestmark = pytest.mark.kafka


def read_all(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list[tuple]:
    """Every record of partition 0 as ``(key, value, headers)``, waiting for ``count``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.2):
                if msg.error() is None:
                    out.append((msg.key(), msg.value(), msg.headers()))
    finally:
        consumer.close()
    return out


async def test_produce_resolves_on_ack_and_keeps_headers(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("out")
    producer = AsyncProducer({"bootstrap.servers": kafka_bootstrap, "linger.ms": "1"})
    await producer.start()
    try:
        async with asyncio.timeout(10):
            await producer.produce(topic, b"v1", key=b"k1", headers=[("h", b"x")])
            futs = [producer.produce_nowait(topic, f"v{i}".encode(), key=b"k") for i in range(2, 12)]
            await producer.flush(10)
        assert all(f.done() and f.exception() is None for f in futs)
        assert producer.in_flight == 0
    finally:
        await producer.close()
    records = read_all(kafka_bootstrap, topic, 11)
    assert records[0] == (b"k1", b"v1", [("h", b"x")])
    assert [v for _, v, _ in records] == [f"v{i}".encode() for i in range(1, 12)]


def refused_over_1k(kafka_bootstrap: str, topic_factory, role: str) -> tuple[str, AsyncProducer]:
    """A topic whose broker refuses records above 1 KiB (a delivery failure), and a producer
    that sends them uncompressed at once."""
    topic = topic_factory(role, config={"max.message.bytes": "1024"})
    producer = AsyncProducer({"bootstrap.servers": kafka_bootstrap, "compression.type": "none",
                              "linger.ms": "0"})
    return topic, producer


async def test_delivery_error_is_raised_and_latched(kafka_bootstrap: str, topic_factory) -> None:
    topic, producer = refused_over_1k(kafka_bootstrap, topic_factory, "small")
    await producer.start()
    try:
        async with asyncio.timeout(15):
            # Awaited: this caller sees the error, and it is not raised a second time.
            with pytest.raises(ProduceError) as info:
                await producer.produce(topic, b"x" * 5000)
            assert info.value.code == "MSG_SIZE_TOO_LARGE"
            assert info.value.retriable is False
            await producer.produce(topic, b"small")

            # Fire-and-forget: the failure is latched and raised by the next flush, once.
            fut = producer.produce_nowait(topic, b"y" * 5000)
            with pytest.raises(ProduceError):
                await producer.flush(10)
            assert fut.done() and isinstance(fut.exception(), ProduceError)
            await producer.flush(10)
            await producer.produce(topic, b"after")
    finally:
        await producer.close()


async def test_a_broker_unreachable_at_start_is_waited_for_not_failed(
        kafka_bootstrap: str, topic_factory) -> None:
    # Bootstrap through a port nothing listens on yet: librdkafka gives the record up after
    # message.timeout.ms, and the producer produces it again instead of failing it.
    topic = topic_factory("late")
    proxy = TcpProxy(free_port(), kafka_bootstrap)
    metrics = Metrics()
    producer = AsyncProducer({"bootstrap.servers": f"127.0.0.1:{proxy.port}", "message.timeout.ms": "300",
                              "log_level": "0"}, metrics=metrics)
    await producer.start()
    try:
        fut = producer.produce_nowait(topic, b"v")
        await asyncio.sleep(1.5)
        assert not fut.done()
        retries = metrics.registry.get_sample_value("cxone_connector_kafka_produce_retries_total",
                                                    {"topic": "other"})
        assert retries is not None and retries >= 1
        await proxy.start()  # the broker is back
        async with asyncio.timeout(20):
            await fut
    finally:
        await producer.close(timeout=5)
        await proxy.stop()
    assert [v for _, v, _ in read_all(kafka_bootstrap, topic, 1)] == [b"v"]


async def test_a_full_local_queue_is_backpressure_in_order(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("full")
    producer = AsyncProducer({"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": "5",
                              "linger.ms": "20"})
    await producer.start()
    try:
        singles = [producer.produce_nowait(topic, f"s{i}".encode()) for i in range(20)]  # never raises
        group = producer.produce_many_nowait((topic, f"g{i}".encode(), None) for i in range(100))
        assert producer.backlog > 0
        async with asyncio.timeout(20):
            await asyncio.gather(*singles, group)
        assert producer.backlog == 0 and producer.in_flight == 0
    finally:
        await producer.close()
    values = [v for _, v, _ in read_all(kafka_bootstrap, topic, 120)]
    assert values == [f"s{i}".encode() for i in range(20)] + [f"g{i}".encode() for i in range(100)]


async def test_use_before_start_and_after_close_is_refused(kafka_bootstrap: str) -> None:
    producer = AsyncProducer({"bootstrap.servers": kafka_bootstrap})
    with pytest.raises(ProduceError):
        producer.produce_nowait("test.never", b"v")
    await producer.start()
    await producer.close()
    with pytest.raises(ProduceError):
        await producer.produce("test.never", b"v")


async def test_invalid_config_is_a_produce_error() -> None:
    producer = AsyncProducer({"bootstrap.servers": "127.0.0.1:9092", "no.such.setting": "1"})
    with pytest.raises(ProduceError) as info:
        await producer.start()
    assert info.value.retriable is False


async def test_a_group_resolves_once_every_record_is_acknowledged(kafka_bootstrap: str, topic_factory) -> None:
    topic = topic_factory("group")
    producer = AsyncProducer({"bootstrap.servers": kafka_bootstrap, "linger.ms": "5"})
    await producer.start()
    try:
        async with asyncio.timeout(10):
            fut = producer.produce_many_nowait((topic, f"g{i}".encode(), b"k") for i in range(50))
            assert producer.in_flight == 50 and not fut.done()
            await fut
            assert producer.in_flight == 0
            empty = producer.produce_many_nowait([])
            assert empty.done() and empty.exception() is None  # nothing to wait for
    finally:
        await producer.close()
    assert [v for _, v, _ in read_all(kafka_bootstrap, topic, 50)] == [f"g{i}".encode() for i in range(50)]


async def test_a_group_fails_when_one_record_fails(kafka_bootstrap: str, topic_factory) -> None:
    topic, producer = refused_over_1k(kafka_bootstrap, topic_factory, "groupsmall")
    await producer.start()
    try:
        async with asyncio.timeout(15):
            fut = producer.produce_many_nowait([(topic, b"ok", None), (topic, b"x" * 5000, None),
                                                (topic, b"ok", None)])
            with pytest.raises(ProduceError):
                await fut
            assert producer.in_flight == 0
            with pytest.raises(ProduceError):  # latched for the next caller too
                producer.produce_nowait(topic, b"next")
    finally:
        await producer.close()  # the latched error was raised once, above


async def test_librdkafka_log_lines_go_through_logging_not_raw_stderr(
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="librdkafka")
    producer = AsyncProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}"})
    await producer.start()
    try:
        async with asyncio.timeout(10):
            while not any(r.name == "librdkafka" for r in caplog.records):
                await asyncio.sleep(0.1)
    finally:
        await producer.close(timeout=1)
    assert any("Connect to" in r.getMessage() or "FAIL" in r.getMessage() for r in caplog.records
               if r.name == "librdkafka")
    assert "|FAIL|" not in capfd.readouterr().err  # no raw "%3|...|FAIL|..." line beside ours
