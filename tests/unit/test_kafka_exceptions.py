"""How librdkafka's errors are classified: retriable or not (connector.kafka.exceptions)."""

from __future__ import annotations

from confluent_kafka import KafkaError as RdKafkaError

from connector.kafka.exceptions import ProduceError, from_kafka_error, is_retriable


def test_a_leader_not_known_yet_is_retriable_although_librdkafka_does_not_say_so() -> None:
    # get_watermark_offsets on a topic created a moment ago answers this (a clean-clone CI run did)
    for code in (RdKafkaError.NOT_LEADER_FOR_PARTITION, RdKafkaError.LEADER_NOT_AVAILABLE,
                 RdKafkaError.REQUEST_TIMED_OUT, RdKafkaError._TIMED_OUT, RdKafkaError._TRANSPORT):
        err = RdKafkaError(code)
        assert is_retriable(err), err.name()
        assert from_kafka_error(ProduceError, err, "x").retriable


def test_fatal_and_permanent_errors_are_not_retriable() -> None:
    assert not is_retriable(RdKafkaError(RdKafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not is_retriable(RdKafkaError(RdKafkaError.NOT_LEADER_FOR_PARTITION, fatal=True))
    assert is_retriable(RdKafkaError(RdKafkaError.TOPIC_AUTHORIZATION_FAILED, retriable=True))
