"""Avro through the real broker (both wire formats) and the Schema Registry client against a
small fake registry served over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from integration_helpers import FakeRegistry, consume_n

from connector.config import Secret
from connector.errors import SerdeError
from connector.serde.codec import AvroCodec, raw_schema
from connector.serde.registry import RegistryClient

pytestmark = pytest.mark.kafka


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    yield fake
    fake.close()


def _contact(i: int) -> dict[str, Any]:
    return {"event_id": f"e{i}", "contact_id": f"C{i}", "phone": f"+1212345{i:04d}", "region_hint": None,
            "first_name": "Ada", "last_name": None, "email": None, "opted_in": i % 3 != 0,
            "changed_at": 1_700_000_000_000 + i, "source": "crm", "custom_fields": {"i": str(i)},
            "time_zone": "America/New_York" if i % 4 == 1 else None, "zip_code": "10001" if i % 4 == 2 else None,
            "state": "NY" if i % 4 == 3 else None}


# -- registry client -------------------------------------------------------------------------


def test_register_and_resolve_with_cache(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url, timeout=5)
    sid = client.register("crm.contacts.optin-value", raw_schema("ContactOptInChanged"))
    assert sid == 100
    assert client.register("crm.contacts.optin-value", raw_schema("ContactOptInChanged")) == sid
    assert registry.subjects["crm.contacts.optin-value"] == [100, 100]
    fresh = RegistryClient(registry.url + "/", timeout=5)
    assert fresh.writer_schema(sid) == raw_schema("ContactOptInChanged")
    assert fresh.writer_schema(sid) == raw_schema("ContactOptInChanged")
    assert registry.gets == [sid]  # second look-up served from the cache


def test_unknown_id_is_not_retriable_and_cached(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url)
    for _ in range(2):
        with pytest.raises(SerdeError, match="^unknown schema id 7") as info:
            client.writer_schema(7)
        assert not info.value.retriable
    assert registry.gets == [7]


def test_server_error_and_unreachable_are_retriable(registry: FakeRegistry) -> None:
    registry.fail_ids.add(5)
    with pytest.raises(SerdeError, match="HTTP 500") as info:
        RegistryClient(registry.url).writer_schema(5)
    assert info.value.retriable
    url = registry.url
    registry.close()
    with pytest.raises(SerdeError, match="unreachable") as info:
        RegistryClient(url, timeout=2).writer_schema(1)
    assert info.value.retriable


def test_basic_auth_header_sent_and_bad_url_rejected(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url, basic_auth=("svc", Secret("s3cret")))
    with pytest.raises(SerdeError):
        client.writer_schema(1)
    assert registry.auth_headers == ["Basic c3ZjOnMzY3JldA=="]
    with pytest.raises(SerdeError, match="http"):
        RegistryClient("file:///etc/passwd")


def test_codec_resolves_ids_through_registry(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url)
    sid = client.register("x-value", raw_schema("DncEntry"))
    writer = AvroCodec("DncEntry", wire_format="confluent", schema_id=sid)
    reader = AvroCodec("DncEntry", wire_format="confluent", resolver=RegistryClient(registry.url))
    value = {"list_name": "national", "reason": None, "added_at": 5, "expires_at": None}
    assert reader.decode(writer.encode(value)) == value
    assert reader.decode(writer.encode(value)) == value
    assert registry.gets == [sid]


# -- through the broker ----------------------------------------------------------------------


def test_avro_round_trip_through_broker_both_wire_formats(
    kafka_bootstrap: str, topic_factory: Any, registry: FakeRegistry
) -> None:
    topic = topic_factory("optin", partitions=2)
    sid = RegistryClient(registry.url).register(f"{topic}-value", raw_schema("ContactOptInChanged"))
    plain = AvroCodec("ContactOptInChanged")
    framed = AvroCodec("ContactOptInChanged", wire_format="confluent", schema_id=sid)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "compression.type": "lz4", "linger.ms": 5})
    sent: dict[str, dict[str, Any]] = {}
    for i in range(40):
        rec = _contact(i)
        sent[rec["event_id"]] = rec
        producer.produce(topic, (framed if i % 2 else plain).encode(rec), rec["contact_id"].encode(),
                         headers=[("fmt", b"confluent" if i % 2 else b"avro")])
    assert producer.flush(30) == 0

    msgs = consume_n(kafka_bootstrap, topic, 40)
    assert len(msgs) == 40
    auto = AvroCodec("ContactOptInChanged", wire_format="auto", resolver=RegistryClient(registry.url))
    strict_framed = AvroCodec("ContactOptInChanged", wire_format="confluent",
                              resolver=RegistryClient(registry.url))
    got: dict[str, dict[str, Any]] = {}
    for msg in msgs:
        value = msg.value()
        rec = auto.decode(value)
        assert msg.key() == rec["contact_id"].encode()
        if dict(msg.headers())["fmt"] == b"confluent":
            assert strict_framed.decode(value) == rec
        else:
            assert plain.decode(value) == rec
            with pytest.raises(SerdeError, match="wrong magic byte"):
                strict_framed.decode(value)
        got[rec["event_id"]] = rec
    assert got == sent


def test_dnc_entries_on_compacted_topic(kafka_bootstrap: str, topic_factory: Any) -> None:
    topic = topic_factory("dnc", partitions=1, config={"cleanup.policy": "compact"})
    codec = AvroCodec("DncEntry")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, codec.encode({"list_name": "national", "added_at": 1}), b"+12123456789")
    producer.produce(topic, None, b"+12123456780")
    assert producer.flush(30) == 0
    msgs = consume_n(kafka_bootstrap, topic, 2)
    from connector.serde.codec import read_dnc_list_name

    assert read_dnc_list_name(msgs[0].value()) == "national"
    assert msgs[1].value() is None


def test_produce_sample_registers_its_schema(registry: FakeRegistry) -> None:
    import argparse

    from connector.cli import produce_sample

    args = argparse.Namespace(wire_format="confluent", schema_id=None, schema_registry_url=registry.url,
                              topic="crm.contacts.optin")
    codec = produce_sample._event_codec(args)
    assert codec.schema_id == 100
    assert registry.subjects == {"crm.contacts.optin-value": [100]}
    assert codec.encode(_contact(1))[:5] == b"\x00\x00\x00\x00\x64"
