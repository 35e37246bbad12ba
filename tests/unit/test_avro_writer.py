"""The compiled Avro writer against fastavro: the same bytes for every record."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import SerdeError
from connector.serde.avro_writer import compile_writer
from connector.serde.codec import AvroCodec, plain_schema

SUPPRESSED = plain_schema("SuppressedContact")

ALL_TYPES = parse_schema({
    "type": "record", "name": "AllTypesOut", "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": {"type": "long"}},
        {"name": "s", "type": "string"},
        {"name": "y", "type": "bytes"},
        {"name": "n", "type": "null"},
        {"name": "u1", "type": ["null", "string"]},
        {"name": "u2", "type": ["long", "null"]},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}},
    ],
})

longs = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=40)


def fastavro_bytes(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, schema, record)
    return buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(record=st.fixed_dictionaries({
    "b": st.booleans(), "i": st.integers(-(2**31), 2**31 - 1), "l": longs, "s": text, "y": st.binary(max_size=20),
    "n": st.none(), "u1": st.one_of(st.none(), text), "u2": st.one_of(st.none(), longs),
    "e": st.sampled_from(["RED", "GREEN", "BLUE"]),
}))
def test_every_supported_type_writes_fastavro_bytes(record: dict[str, Any]) -> None:
    writer = compile_writer(ALL_TYPES)
    assert writer is not None
    assert writer(record) == fastavro_bytes(ALL_TYPES, record)


@settings(max_examples=300, deadline=None)
@given(record=st.fixed_dictionaries({
    "event_id": text, "contact_id": text, "phone_e164": st.one_of(st.none(), text),
    "reason": st.sampled_from(["DNC", "OPTED_OUT", "UNKNOWN"]), "list_name": st.one_of(st.none(), text),
    "check_stage": st.sampled_from(["ARRIVAL", "FLUSH", "UNKNOWN"]), "checked_at": longs, "source_topic": text,
    "source_partition": st.integers(0, 2**31 - 1), "source_offset": st.integers(0, 2**63 - 1),
}))
def test_audit_records_write_fastavro_bytes_and_read_back(record: dict[str, Any]) -> None:
    data = AvroCodec("SuppressedContact").encode(record, check=False)
    assert data == fastavro_bytes(SUPPRESSED, record)
    assert schemaless_reader(io.BytesIO(data), SUPPRESSED, None) == record


def test_wrong_shapes_fail_or_fall_back() -> None:
    writer = compile_writer(ALL_TYPES)
    assert writer is not None
    good = {"b": True, "i": 1, "l": 2, "s": "x", "y": b"z", "n": None, "u1": None, "u2": 3, "e": "RED"}
    for field, bad in (("b", 1), ("i", "1"), ("l", True), ("s", b"x"), ("y", "z"), ("n", 0), ("u1", 5)):
        with pytest.raises(TypeError):
            writer({**good, field: bad})
    with pytest.raises(KeyError):
        writer({**good, "e": "PURPLE"})
    with pytest.raises(KeyError):
        writer({k: v for k, v in good.items() if k != "s"})
    codec = AvroCodec("SuppressedContact")
    record = {"event_id": "e", "contact_id": "c", "phone_e164": None, "reason": "DNC", "list_name": None,
              "check_stage": "FLUSH", "checked_at": 1_700_000_000_000, "source_topic": "t",
              "source_partition": 0, "source_offset": 1}
    as_datetime = {**record, "checked_at": datetime.fromtimestamp(1_700_000_000, tz=UTC)}
    assert codec.encode(as_datetime, check=False) == codec.encode(record, check=False)  # via fastavro
    with pytest.raises(SerdeError, match="unknown symbol"):
        codec.encode({**record, "reason": "NOPE"}, check=False)


def test_what_it_does_not_compile_is_left_to_fastavro() -> None:
    for schema in (
        {"type": "record", "name": "F", "fields": [{"name": "f", "type": "double"}]},
        {"type": "record", "name": "M", "fields": [{"name": "m", "type": {"type": "map", "values": "string"}}]},
        {"type": "record", "name": "T", "fields": [{"name": "t", "type": {"type": "long",
                                                                          "logicalType": "timestamp-millis"}}]},
    ):
        assert compile_writer(parse_schema(schema)) is None
    assert compile_writer("string") is None
    assert compile_writer(plain_schema("DncEntry")) is not None
