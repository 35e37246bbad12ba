"""The local broker is a real Apache Kafka 4.1 KRaft broker that compacts topics."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

pytestmark = pytest.mark.kafka


def test_compacted_topic_round_trip(kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory) -> None:
    topic = topic_factory("compact", partitions=2, config={"cleanup.policy": "compact"})

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = kafka_admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(10):
        producer.produce(topic, key=f"k{i % 3}".encode(), value=f"v{i}".encode())
    producer.produce(topic, key=b"k0", value=None)  # a tombstone
    assert producer.flush(10) == 0

    consumer = Consumer({
        "bootstrap.servers": kafka_bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    seen: list[tuple[bytes, bytes | None]] = []
    try:
        for _ in range(100):
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                assert msg.error() is None
                seen.append((msg.key(), msg.value()))
            if len(seen) == 11:
                break
    finally:
        consumer.close()
    assert len(seen) == 11
    assert (b"k0", None) in seen
    assert sorted(v for _, v in seen if v is not None) == sorted(f"v{i}".encode() for i in range(10))


def test_broker_is_kraft_4_1(kafka_admin: AdminClient) -> None:
    # describe_cluster answers only on a running cluster; KRaft brokers report a controller.
    cluster = kafka_admin.describe_cluster(request_timeout=10).result()
    assert cluster.cluster_id
    assert cluster.controller is not None
