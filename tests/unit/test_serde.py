"""connector.serde.codec: schemas, round trips, framing, and every decoding failure with its reason."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import SerdeError
from connector.serde import codec as serde
from connector.serde.codec import SCHEMA_NAMES, AvroCodec, frame, raw_schema, read_dnc_list_name, unframe

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

CONTACT: dict[str, Any] = {
    "event_id": "evt-1",
    "contact_id": "C00000001",
    "phone": "(212) 345-6789",
    "region_hint": "US",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "opted_in": True,
    "changed_at": 1_700_000_000_123,
    "source": "crm",
    "custom_fields": {"segment": "gold"},
    "time_zone": "America/New_York",
    "zip_code": "10001",
    "state": "NY",
}

SAMPLES: dict[str, dict[str, Any]] = {
    "ContactOptInChanged": CONTACT,
    "DncEntry": {"list_name": "national", "reason": "registry", "added_at": 1_700_000_000_000,
                 "expires_at": 1_800_000_000_000},
    "JobEvent": {
        "job_id": "job-1", "batch_id": "b-1", "list_id": "list-1", "profile": "v2",
        "status": "IN_PROGRESS", "progress": 40, "item_count": 3, "attempt": 2,
        "time": 1_700_000_000_000, "detail": None,
        "source_ranges": [{"topic": "crm.contacts.optin", "partition": 2, "first_offset": 10,
                           "last_offset": 12}],
    },
    "CallbackResult": {
        "delivery_id": "d-1", "batch_id": "b-1", "job_ids": ["job-1", "job-2"], "outcome": "DELIVERED",
        "url_host": "hooks.example.com:8443", "http_status": 204, "attempts": 1, "latency_ms": 42,
        "time": 1_700_000_000_000, "error": None,
    },
    "SuppressedContact": {
        "event_id": "evt-1", "contact_id": "C1", "phone_e164": "+12123456789", "reason": "DNC",
        "list_name": "national", "check_stage": "FLUSH", "checked_at": 1_700_000_000_000,
        "source_topic": "crm.contacts.optin", "source_partition": 0, "source_offset": 7,
    },
    "DncListRefresh": {
        "list_name": "national", "source": "ftc-full-2026-11-30.zip", "as_of": 20_787,
        "synced_at": 1_796_000_000_000, "numbers": 258_500_000, "adds": 120_000, "removes": 95_000,
        "invalid": 0, "mode": "FULL",
    },
}


class DictResolver:
    """A SchemaResolver over a dict: a real implementation of the protocol, no network."""

    def __init__(self, schemas: dict[int, dict[str, Any]], *, down: bool = False) -> None:
        self.schemas = schemas
        self.down = down
        self.calls: list[int] = []

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        self.calls.append(schema_id)
        if self.down:
            raise SerdeError("schema registry unreachable", retriable=True)
        if schema_id not in self.schemas:
            raise SerdeError(f"unknown schema id {schema_id}")
        return self.schemas[schema_id]


# -- schemas ------------------------------------------------------------------------------


def test_schema_files_match_names_and_document_every_field() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc")) == sorted(SCHEMA_NAMES)
    for name in SCHEMA_NAMES:
        raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
        assert raw["namespace"] == serde.NAMESPACE
        assert raw["doc"]
        for fld in raw["fields"]:
            assert fld.get("doc"), f"{name}.{fld['name']} has no doc"
        assert serde.schema(name)["name"] == f"{serde.NAMESPACE}.{name}"


def test_dnc_list_name_is_the_first_field() -> None:
    assert raw_schema("DncEntry")["fields"][0]["name"] == "list_name"


@pytest.mark.parametrize(
    ("name", "enum_field", "symbols"),
    [
        ("JobEvent", "status",
         ["SUBMITTED", "IN_PROGRESS", "COMPLETED", "FAILED", "ABORTED", "RETRYING", "UNKNOWN"]),
        ("CallbackResult", "outcome", ["DELIVERED", "FAILED", "UNKNOWN"]),
        ("SuppressedContact", "reason", ["DNC", "OPTED_OUT", "NO_TIME_ZONE", "UNKNOWN"]),
        ("SuppressedContact", "check_stage", ["ARRIVAL", "FLUSH", "SEND", "UNKNOWN"]),
        ("DncListRefresh", "mode", ["FULL", "CHANGES", "UNKNOWN"]),
    ],
)
def test_enums_have_unknown_default(name: str, enum_field: str, symbols: list[str]) -> None:
    fld = next(f for f in raw_schema(name)["fields"] if f["name"] == enum_field)
    assert fld["type"]["symbols"] == symbols
    assert fld["type"]["default"] == "UNKNOWN"


def test_unknown_schema_name() -> None:
    with pytest.raises(SerdeError, match="unknown schema name"):
        AvroCodec("Nope")
    with pytest.raises(SerdeError, match="unknown schema name"):
        serde.schema("Nope")


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@pytest.mark.parametrize("wire_format", ["avro", "confluent", "auto"])
def test_round_trip_every_schema(name: str, wire_format: serde.WireFormat) -> None:
    codec = AvroCodec(name, wire_format=wire_format, schema_id=None if wire_format == "avro" else 17)
    data = codec.encode(SAMPLES[name])
    if wire_format != "avro":
        assert data[:5] == b"\x00\x00\x00\x00\x11"
    assert codec.decode(data) == SAMPLES[name]


def test_defaults_fill_left_out_fields_and_timestamps_decode_as_int_ms() -> None:
    codec = AvroCodec("ContactOptInChanged")
    minimal = {"event_id": "e", "contact_id": "c", "phone": "1", "opted_in": False,
               "changed_at": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)}
    out = codec.decode(codec.encode(minimal))
    assert out["source"] == "crm"
    assert out["custom_fields"] == {}
    assert out["region_hint"] is None and out["email"] is None
    assert out["changed_at"] == 1_704_153_600_000


def test_schemaless_matches_framed_payload() -> None:
    plain = AvroCodec("DncEntry").encode(SAMPLES["DncEntry"])
    framed = AvroCodec("DncEntry", wire_format="confluent", schema_id=3).encode(SAMPLES["DncEntry"])
    assert framed == frame(3, plain)
    assert unframe(framed) == (3, plain)


contact_records = st.fixed_dictionaries({
    "event_id": st.text(max_size=40),
    "contact_id": st.text(max_size=40),
    "phone": st.text(max_size=40),
    "region_hint": st.none() | st.text(max_size=3),
    "first_name": st.none() | st.text(max_size=30),
    "last_name": st.none() | st.text(max_size=30),
    "email": st.none() | st.text(max_size=50),
    "opted_in": st.booleans(),
    "changed_at": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "source": st.text(max_size=10),
    "custom_fields": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5),
    "time_zone": st.none() | st.text(max_size=40),
    "zip_code": st.none() | st.text(max_size=12),
    "state": st.none() | st.text(max_size=20),
})


@given(record=contact_records, framed=st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_contact_round_trip_property(record: dict[str, Any], framed: bool) -> None:
    codec = AvroCodec("ContactOptInChanged", wire_format="confluent" if framed else "avro", schema_id=5)
    assert codec.decode(codec.encode(record)) == record


# -- decoding failures -------------------------------------------------------------------


@pytest.mark.parametrize("wire_format", ["avro", "confluent", "auto"])
def test_empty_input(wire_format: serde.WireFormat) -> None:
    with pytest.raises(SerdeError, match="^empty"):
        AvroCodec("ContactOptInChanged", wire_format=wire_format, schema_id=1).decode(b"")


def test_every_truncation_is_reported() -> None:
    codec = AvroCodec("ContactOptInChanged")
    data = codec.encode(CONTACT)
    # a record written before the fields added later ends where one of them begins: not a cut
    added = ("time_zone", "zip_code", "state")
    older = {len(codec.encode({**CONTACT, **dict.fromkeys(added[k:])})) - (len(added) - k): added[k:]
             for k in range(len(added))}
    for cut in range(1, len(data)):
        if cut in older:
            assert codec.decode(data[:cut]) == {**CONTACT, **dict.fromkeys(older[cut])}
            continue
        with pytest.raises(SerdeError, match="^(truncated|malformed)"):
            codec.decode(data[:cut])
    with pytest.raises(SerdeError, match="^truncated: ContactOptInChanged"):
        codec.decode(data[:-1])


def test_truncated_frame_header() -> None:
    codec = AvroCodec("ContactOptInChanged", wire_format="confluent", schema_id=1)
    with pytest.raises(SerdeError, match="^truncated: 3 bytes"):
        codec.decode(b"\x00\x00\x00")


@pytest.mark.parametrize("wire_format", ["avro", "confluent"])
def test_trailing_garbage(wire_format: serde.WireFormat) -> None:
    codec = AvroCodec("DncEntry", wire_format=wire_format, schema_id=9)
    with pytest.raises(SerdeError, match="^trailing bytes: 3 bytes after a complete DncEntry"):
        codec.decode(codec.encode(SAMPLES["DncEntry"]) + b"xyz")


def test_wrong_magic_byte() -> None:
    codec = AvroCodec("DncEntry", wire_format="confluent", schema_id=9)
    data = b"\x01" + codec.encode(SAMPLES["DncEntry"])[1:]
    with pytest.raises(SerdeError, match="^wrong magic byte: 0x01"):
        codec.decode(data)
    with pytest.raises(SerdeError, match="^wrong magic byte"):
        unframe(data)


def test_unknown_schema_id_without_and_with_resolver() -> None:
    data = frame(99, AvroCodec("DncEntry").encode(SAMPLES["DncEntry"]))
    with pytest.raises(SerdeError, match="^unknown schema id 99"):
        AvroCodec("DncEntry", wire_format="confluent", schema_id=1).decode(data)
    resolver = DictResolver({})
    with pytest.raises(SerdeError, match="^unknown schema id 99") as info:
        AvroCodec("DncEntry", wire_format="confluent", resolver=resolver).decode(data)
    assert not info.value.retriable


def test_registry_down_is_retriable_in_confluent_and_auto() -> None:
    data = frame(99, AvroCodec("DncEntry").encode(SAMPLES["DncEntry"]))
    formats: tuple[serde.WireFormat, ...] = ("confluent", "auto")
    for fmt in formats:
        codec = AvroCodec("DncEntry", wire_format=fmt, resolver=DictResolver({}, down=True))
        with pytest.raises(SerdeError) as info:
            codec.decode(data)
        assert info.value.retriable


def test_incompatible_writer_schema() -> None:
    # A DncEntry written under id 4, read by a ContactOptInChanged codec: wrong schema.
    resolver = DictResolver({4: raw_schema("DncEntry")})
    data = frame(4, AvroCodec("DncEntry").encode(SAMPLES["DncEntry"]))
    codec = AvroCodec("ContactOptInChanged", wire_format="confluent", resolver=resolver)
    with pytest.raises(SerdeError, match="^incompatible schema: writer schema cannot be read as Contact"):
        codec.decode(data)


def test_incompatible_field_type() -> None:
    # Same record name, but opted_in written as a string: no promotion to boolean exists.
    writer = copy.deepcopy(raw_schema("ContactOptInChanged"))
    for fld in writer["fields"]:
        if fld["name"] == "opted_in":
            fld["type"] = "string"
    resolver = DictResolver({6: writer})
    record = dict(CONTACT, opted_in="yes")
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(writer, named_schemas={}), record)
    payload = buf.getvalue()
    codec = AvroCodec("ContactOptInChanged", wire_format="confluent", resolver=resolver)
    with pytest.raises(SerdeError, match="^incompatible schema"):
        codec.decode(frame(6, payload))


def test_not_a_record_writer_schema() -> None:
    codec = AvroCodec("DncEntry", wire_format="confluent", resolver=DictResolver({2: {"type": "string"}}))
    with pytest.raises(SerdeError, match="^incompatible schema: schema id 2 is not a record"):
        codec.decode(frame(2, b"\x02a"))


def test_older_writer_schema_resolves_with_defaults() -> None:
    # Evolution: a writer without the optional fields; the reader fills their defaults.
    old = copy.deepcopy(raw_schema("ContactOptInChanged"))
    keep = {"event_id", "contact_id", "phone", "opted_in", "changed_at"}
    old["fields"] = [f for f in old["fields"] if f["name"] in keep]
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(old, named_schemas={}),
                      {"event_id": "e", "contact_id": "c", "phone": "p", "opted_in": True, "changed_at": 5})
    resolver = DictResolver({8: old})
    out = AvroCodec("ContactOptInChanged", wire_format="confluent", resolver=resolver).decode(
        frame(8, buf.getvalue()))
    assert out["source"] == "crm" and out["custom_fields"] == {} and out["first_name"] is None
    assert out["changed_at"] == 5


def test_new_enum_symbol_reads_as_unknown() -> None:
    newer = copy.deepcopy(raw_schema("JobEvent"))
    status = next(f for f in newer["fields"] if f["name"] == "status")
    status["type"]["symbols"] = [*status["type"]["symbols"], "PAUSED"]
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(newer, named_schemas={}), dict(SAMPLES["JobEvent"], status="PAUSED"))
    codec = AvroCodec("JobEvent", wire_format="confluent", resolver=DictResolver({12: newer}))
    assert codec.decode(frame(12, buf.getvalue()))["status"] == "UNKNOWN"


def test_non_utf8_string() -> None:
    codec = AvroCodec("ContactOptInChanged")
    data = bytearray(codec.encode(CONTACT))
    # event_id "evt-1" starts at byte 1 (after its length varint); make it invalid UTF-8.
    data[1] = 0xFF
    with pytest.raises(SerdeError, match="^non-UTF-8 string: ContactOptInChanged"):
        codec.decode(bytes(data))


def test_auto_detects_framed_only_for_known_ids() -> None:
    plain_codec = AvroCodec("ContactOptInChanged")
    resolver = DictResolver({21: raw_schema("ContactOptInChanged")})
    auto = AvroCodec("ContactOptInChanged", wire_format="auto", resolver=resolver)
    framed = frame(21, plain_codec.encode(CONTACT))
    assert auto.decode(framed) == CONTACT
    assert auto.decode(plain_codec.encode(CONTACT)) == CONTACT
    # Schemaless record starting with byte 0 (empty event_id): its next 4 bytes spell an id
    # the resolver does not know, so it is read schemaless, and the miss is cached.
    empty_id = dict(CONTACT, event_id="")
    data = plain_codec.encode(empty_id)
    assert data[0] == 0
    assert auto.decode(data) == empty_id
    calls = len(resolver.calls)
    assert auto.decode(data) == empty_id
    assert len(resolver.calls) == calls


def test_auto_without_resolver_knows_own_id() -> None:
    codec = AvroCodec("DncEntry", wire_format="auto", schema_id=4)
    framed = codec.encode(SAMPLES["DncEntry"])
    assert framed[:5] == frame(4, b"")
    assert codec.decode(framed) == SAMPLES["DncEntry"]
    assert codec.decode(AvroCodec("DncEntry").encode(SAMPLES["DncEntry"])) == SAMPLES["DncEntry"]


@given(data=st.binary(max_size=200))
@settings(max_examples=500)
def test_arbitrary_bytes_only_raise_serde_error(data: bytes) -> None:
    for name in SCHEMA_NAMES:
        for codec in (AvroCodec(name),
                      AvroCodec(name, wire_format="confluent", schema_id=0),
                      AvroCodec(name, wire_format="auto", schema_id=0)):
            try:
                out = codec.decode(data)
            except SerdeError as exc:
                assert str(exc)
            else:
                assert isinstance(out, dict)


@given(suffix=st.binary(min_size=1, max_size=60))
@settings(max_examples=300)
def test_valid_prefix_plus_garbage_only_raises_serde_error(suffix: bytes) -> None:
    codec = AvroCodec("ContactOptInChanged")
    data = codec.encode(CONTACT)
    with pytest.raises(SerdeError):
        codec.decode(data + suffix)
    with pytest.raises(SerdeError):
        codec.decode(data[: len(data) // 2] + suffix)


# -- encoding failures ---------------------------------------------------------------------


def test_encode_invalid_record_names_field_not_value() -> None:
    codec = AvroCodec("ContactOptInChanged")
    with pytest.raises(SerdeError, match="^invalid record: ContactOptInChanged: .*phone") as info:
        codec.encode(dict(CONTACT, phone=12125550123))
    assert "12125550123" not in str(info.value)
    with pytest.raises(SerdeError, match="contact_id"):
        codec.encode({k: v for k, v in CONTACT.items() if k != "contact_id"})
    with pytest.raises(SerdeError, match="^invalid record: JobEvent: .*status"):
        AvroCodec("JobEvent").encode(dict(SAMPLES["JobEvent"], status="DONE"))


def test_encode_confluent_without_schema_id() -> None:
    with pytest.raises(SerdeError, match="needs a schema_id"):
        AvroCodec("DncEntry", wire_format="confluent").encode(SAMPLES["DncEntry"])


# -- framing and the DNC fast path -----------------------------------------------------------


def test_frame_rejects_out_of_range_ids() -> None:
    with pytest.raises(SerdeError, match="invalid schema id"):
        frame(-1, b"")
    with pytest.raises(SerdeError, match="invalid schema id"):
        frame(2**32, b"")
    assert unframe(frame(2**32 - 1, b"ab")) == (2**32 - 1, b"ab")


@given(name=st.text(max_size=300), reason=st.none() | st.text(max_size=20))
@settings(max_examples=200)
def test_read_dnc_list_name_matches_full_decode(name: str, reason: str | None) -> None:
    codec = AvroCodec("DncEntry")
    value = codec.encode({"list_name": name, "reason": reason, "added_at": 1, "expires_at": None})
    assert read_dnc_list_name(value) == name == codec.decode(value)["list_name"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "^empty"),
        (b"\x80", "^truncated: list_name length varint"),
        (b"\x80" * 11, "^malformed: list_name length varint longer"),
        (b"\x01abc", "^malformed: negative list_name length"),
        (b"\x0aabc", "^truncated: list_name needs 5 bytes, 3 left"),
        (b"\x04\xff\xfe", "^non-UTF-8 string: list_name"),
    ],
)
def test_read_dnc_list_name_bad_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(SerdeError, match=reason):
        read_dnc_list_name(data)


@given(data=st.binary(max_size=40))
def test_read_dnc_list_name_arbitrary_bytes(data: bytes) -> None:
    try:
        assert isinstance(read_dnc_list_name(data), str)
    except SerdeError:
        pass


def test_every_audit_stage_the_core_writes_is_a_check_stage_symbol() -> None:
    from connector.core.ingest import STAGE_SEND
    from connector.core.windowing import STAGE_ARRIVAL, STAGE_FLUSH

    codec = AvroCodec("SuppressedContact")
    for stage in (STAGE_ARRIVAL, STAGE_FLUSH, STAGE_SEND):
        record = {**SAMPLES["SuppressedContact"], "check_stage": stage, "reason": "NO_TIME_ZONE"}
        assert codec.decode(codec.encode(record, check=False))["check_stage"] == stage
