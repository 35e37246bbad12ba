"""Unit and property tests for connector.pipeline.decoding: one tuple per record, whatever the bytes."""

from __future__ import annotations

import io
import pickle
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.models import ContactEvent, SourceRef
from connector.core.phones import PhoneNormalizer
from connector.core.windowing import item_payload_bytes
from connector.pipeline.decoding import (
    OK,
    STAGE_DECODE,
    STAGE_NORMALISE,
    STAGE_VALIDATE,
    VALIDATION_ERROR,
    Decoder,
    DecodeSpec,
    decode_chunk,
)
from connector.serde.codec import AvroCodec, plain_schema

CODEC = AvroCodec("ContactOptInChanged")


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1", "contact_id": "c-1", "phone": "(415) 555-0123", "region_hint": None,
        "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "opted_in": True,
        "changed_at": 1_700_000_000_000, "source": "crm", "custom_fields": {"segment": "gold"},
    }
    base.update(overrides)
    return base


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder(DecodeSpec(wire_format="avro", cache_size=100))


def test_a_good_record_gives_its_fields_and_payload_size(decoder: Decoder) -> None:
    [out] = decoder.decode_many([(b"c-1", CODEC.encode(record()))])
    # no zone, ZIP code or state in the event: the number's zone (415 is San Francisco)
    assert out[6:] == ("America/Los_Angeles", "number")
    assert out[:5] == (OK, "c-1", "+14155550123", True,
                       item_payload_bytes("+14155550123", "Ada", "Lovelace", "ada@example.com", {"segment": "gold"},
                                          "crm", "America/Los_Angeles"))
    assert isinstance(out[5], bytes)  # the details, packed (marshal's bytes depend on sharing, not compared)
    assert pickle.loads(pickle.dumps(out)) == out  # noqa: S301 - our own bytes; crosses a process boundary
    event = ContactEvent(SourceRef("t", 0, 5), b"c-1", b"raw", [], 0, *out[1:])
    assert (event.event_id, event.first_name, event.last_name, event.email, event.custom_fields,
            event.changed_at_ms, event.source_system) == (
        "e-1", "Ada", "Lovelace", "ada@example.com", {"segment": "gold"}, 1_700_000_000_000, "crm")
    assert (event.time_zone, event.time_zone_source) == ("America/Los_Angeles", "number")


@pytest.mark.parametrize(("fields", "zone", "source"), [
    ({"time_zone": "america/chicago", "zip_code": "79901", "state": "NY"}, "America/Chicago", "event"),
    ({"time_zone": "Mars/Base", "zip_code": "79901-0001", "state": "NY"}, "America/Denver", "zip"),
    ({"zip_code": "nope", "state": "Texas"}, "America/Chicago", "state"),
    ({"state": "TX", "phone": "(915) 345-6789"}, "America/Denver", "state"),  # the number picks Mountain
    ({"phone": "800 345 6789"}, "", "unknown"),  # toll-free: all of NANP
])
def test_the_time_zone_comes_from_the_event_zip_state_or_number(
        decoder: Decoder, fields: dict[str, Any], zone: str, source: str) -> None:
    [out] = decoder.decode_many([(b"c-1", CODEC.encode(record(**fields)))])
    assert out[0] == OK and out[6:] == (zone, source)


def test_the_default_zone_applies_when_nothing_else_resolves_and_opt_outs_resolve_none() -> None:
    decoder = Decoder(DecodeSpec(wire_format="avro", cache_size=100, default_time_zone="America/Phoenix"))
    [toll_free, opt_out] = decoder.decode_many([
        (b"c-1", CODEC.encode(record(phone="800 345 6789"))),
        (b"c-2", CODEC.encode(record(contact_id="c-2", opted_in=False, zip_code="79901"))),
    ])
    assert toll_free[6:] == ("America/Phoenix", "default")
    assert opt_out[0] == OK and opt_out[3] is False and opt_out[6:] == ("", "")
    with pytest.raises(ValueError, match="default_time_zone"):
        Decoder(DecodeSpec(default_time_zone="Nowhere/Special"))


def test_a_record_of_the_older_schema_still_decodes(decoder: Decoder) -> None:
    schema = plain_schema("ContactOptInChanged")
    old = parse_schema({"type": "record", "name": schema["name"], "fields": schema["fields"][:11]}, _write_hint=False)
    buf = io.BytesIO()
    schemaless_writer(buf, old, record(phone="(212) 345-6789"))
    [out] = decoder.decode_many([(b"c-1", buf.getvalue())])
    assert out[0] == OK and out[2] == "+12123456789" and out[6:] == ("America/New_York", "number")


@pytest.mark.parametrize(("name", "limit"), [("time_zone", 64), ("zip_code", 16), ("state", 64)])
def test_the_location_fields_are_bounded(decoder: Decoder, name: str, limit: int) -> None:
    [ok] = decoder.decode_many([(b"c-1", CODEC.encode(record(**{name: "x" * limit})))])
    [bad] = decoder.decode_many([(b"c-1", CODEC.encode(record(**{name: "x" * (limit + 1)})))])
    assert ok[0] == OK
    assert bad[:2] == (STAGE_VALIDATE, VALIDATION_ERROR) and f"{name} longer than {limit}" in bad[2]


@pytest.mark.parametrize(
    ("key", "value", "stage", "message"),
    [
        (b"c-1", None, STAGE_VALIDATE, "null value"),
        (b"", CODEC.encode(record()), STAGE_VALIDATE, "empty key"),
        (b"c-1", CODEC.encode(record())[:9], STAGE_DECODE, "truncated"),
        (b"c-1", CODEC.encode(record(first_name="x" * 10_000)), STAGE_VALIDATE, "first_name longer than 256"),
        (b"c-1", CODEC.encode(record(phone="12345")), STAGE_NORMALISE, "not_possible: phone ***45"),
        # a date no CXone body can carry fails here, not when its batch is sent
        (b"c-1", CODEC.encode(record(changed_at=253_402_300_800_000)), STAGE_VALIDATE, "changed_at outside"),
        (b"c-1", CODEC.encode(record(changed_at=-(2**63))), STAGE_VALIDATE, "changed_at outside"),
        (b"c-1", b"", STAGE_DECODE, "empty"),
    ],
)
def test_each_failure_names_its_stage_and_reason(
    decoder: Decoder, key: bytes, value: bytes | None, stage: str, message: str
) -> None:
    [out] = decoder.decode_many([(key, value)])
    assert out[0] == stage
    assert len(out) == 4
    assert message in out[2]
    if stage == STAGE_VALIDATE:
        assert out[1] == VALIDATION_ERROR and out[3] == STAGE_VALIDATE
    if stage == STAGE_NORMALISE:
        assert out[1] == "connector.errors.PhoneError" and out[3] == "not_possible"
    assert "4155550123" not in out[2]


def test_order_and_count_are_kept(decoder: Decoder) -> None:
    pairs = [(b"k", CODEC.encode(record(event_id=f"e{i}", phone=f"+1415555{i:04d}"))) for i in range(200, 260)]
    pairs.insert(7, (b"k", b"\x01garbage"))
    outs = decoder.decode_many(pairs)
    assert len(outs) == len(pairs)
    events = [ContactEvent(SourceRef("t", 0, 0), b"k", b"", [], 0, *o[1:]) for o in outs if o[0] == OK]
    assert [event.event_id for event in events] == [f"e{i}" for i in range(200, 260)]
    assert outs[7][0] == STAGE_DECODE


def test_the_worker_entry_point_keeps_one_decoder_per_spec() -> None:
    spec = DecodeSpec(wire_format="avro", default_region="GB", cache_size=10)
    first = decode_chunk(spec, [(b"k", CODEC.encode(record(phone="020 7946 0958")))])
    again = decode_chunk(spec, [(b"k", CODEC.encode(record(phone="020 7946 0958")))])
    assert first[0][2] == again[0][2] == "+442079460958"
    other = decode_chunk(DecodeSpec(wire_format="avro", default_region="US", cache_size=10),
                         [(b"k", CODEC.encode(record(phone="020 7946 0958")))])
    assert other[0][0] == STAGE_NORMALISE  # not a US number: the spec's region applies


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=300)), value=st.one_of(st.none(), st.binary(max_size=200)))
def test_arbitrary_bytes_never_raise(decoder: Decoder, key: bytes | None, value: bytes | None) -> None:
    [out] = decoder.decode_many([(key, value)])
    assert out[0] in (OK, STAGE_DECODE, STAGE_VALIDATE, STAGE_NORMALISE)
    assert len(out) == (6 if out[0] == OK else 4)


@settings(max_examples=200, deadline=None)
@given(phone=st.text(max_size=40), hint=st.one_of(st.none(), st.text(max_size=4)),
       name=st.one_of(st.none(), st.text(max_size=30)))
def test_arbitrary_fields_decode_or_fail_by_stage(decoder: Decoder, phone: str, hint: str | None,
                                                  name: str | None) -> None:
    [out] = decoder.decode_many([(b"c", CODEC.encode(record(phone=phone, region_hint=hint, first_name=name)))])
    if out[0] == OK:
        assert out[2].startswith("+") and out[2][1:].isdigit()
        assert out[4] == item_payload_bytes(out[2], name, "Lovelace", "ada@example.com", {"segment": "gold"}, "crm")
    else:
        assert out[0] in (STAGE_VALIDATE, STAGE_NORMALISE)


@settings(max_examples=200, deadline=None)
@given(changed_at=st.integers(-(2**63), 2**63 - 1))
def test_every_accepted_change_time_can_be_written_into_a_cxone_body(decoder: Decoder, changed_at: int) -> None:
    from connector.cxone.protocol import iso_utc

    [out] = decoder.decode_many([(b"c", CODEC.encode(record(changed_at=changed_at)))])
    if out[0] == OK:
        event = ContactEvent(SourceRef("t", 0, 0), b"c", b"", [], 0, *out[1:])
        assert len(iso_utc(event.changed_at_ms)) <= 20  # no error, never longer than the size model's date
    else:
        assert out[2] == "changed_at outside years 1 to 9999"


# -- poison records (issue 12, item 5): whatever comes in, one tuple comes out, never a raise ----

_STAGES = {OK, STAGE_DECODE, STAGE_VALIDATE, STAGE_NORMALISE}
_text = st.text(max_size=80)
_any_record = st.fixed_dictionaries({
    "event_id": _text, "contact_id": _text, "phone": st.one_of(_text, st.from_regex(r"\+?[0-9 ().-]{0,20}")),
    "region_hint": st.one_of(st.none(), st.text(max_size=4)), "first_name": st.one_of(st.none(), _text),
    "last_name": st.one_of(st.none(), _text), "email": st.one_of(st.none(), _text), "opted_in": st.booleans(),
    "changed_at": st.integers(-(2**63), 2**63 - 1), "source": _text,
    "custom_fields": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5),
    "time_zone": st.one_of(st.none(), _text), "zip_code": st.one_of(st.none(), st.text(max_size=12)),
    "state": st.one_of(st.none(), st.text(max_size=20)),
})


class _FlakyResolver:
    """A schema registry that answers garbage, raises, or says it is down."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[return-value]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=300)),
                          st.one_of(st.none(), st.binary(max_size=200))), max_size=8))
def test_arbitrary_bytes_never_raise_and_each_record_gets_a_stage(
        records: list[tuple[bytes | None, bytes | None]]) -> None:
    for wire in ("avro", "auto"):
        out = Decoder(DecodeSpec(wire_format=wire, cache_size=10)).decode_many(records)  # type: ignore[arg-type]
        assert len(out) == len(records) and all(o[0] in _STAGES for o in out)


@settings(max_examples=300, deadline=None)
@given(_any_record, st.binary(max_size=3))
def test_arbitrary_field_values_never_raise(value: dict[str, Any], key: bytes) -> None:
    raw = CODEC.encode(value, check=False)
    [out] = Decoder(DecodeSpec(wire_format="avro", cache_size=10)).decode_many([(key, raw)])
    assert out[0] in _STAGES


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.binary(max_size=60),
       st.sampled_from([{"type": "string"}, {"type": "record", "name": "X", "fields": "nope"}, [], "int",
                        ValueError("registry bug"), KeyError("schema"), RecursionError()]))
def test_arbitrary_schema_ids_and_registry_answers_never_raise(schema_id: int, body: bytes, answer: object) -> None:
    codec = AvroCodec("ContactOptInChanged", wire_format="confluent", resolver=_FlakyResolver(answer))
    decoder = Decoder(DecodeSpec(wire_format="confluent", cache_size=10), codec=codec)
    framed = b"\x00" + schema_id.to_bytes(4, "big") + body
    [out] = decoder.decode_many([(b"k", framed)])
    assert out[0] in _STAGES and out[0] != OK


def test_an_exception_nobody_foresaw_is_dead_lettered_with_its_class() -> None:
    class Exploding(PhoneNormalizer):
        def outcome(self, raw: str, region_hint: str | None) -> Any:
            raise ZeroDivisionError(f"bad luck for {raw}")

    decoder = Decoder(DecodeSpec(wire_format="avro", cache_size=10), normalizer=Exploding("US", 10))
    good = CODEC.encode(record())
    out = decoder.decode_many([(b"c-1", good), (b"c-2", good)])
    assert [o[:2] for o in out] == [(STAGE_NORMALISE, "builtins.ZeroDivisionError")] * 2
    assert "4155550123" not in out[0][2].replace(" ", "").replace("-", "")  # the message is masked
