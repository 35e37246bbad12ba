"""The compiled Avro readers (C and generated Python) against fastavro: same records, never
more lenient; and the C one is there (built by ``pip install``)."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.serde.avro_reader import NATIVE, compile_reader, flat_program, read_long, required_fields
from connector.serde.codec import AvroCodec, plain_schema

CONTACT = plain_schema("ContactOptInChanged")
#: The fields every ContactOptInChanged holds; the ones after them were added later.
REQUIRED = required_fields(CONTACT)
ADDED_LATER = [f["name"] for f in CONTACT["fields"][REQUIRED:]]


def older_writer(fields: int) -> dict[str, Any]:
    """ContactOptInChanged as it was with only its first ``fields`` fields."""
    return parse_schema({"type": "record", "name": CONTACT["name"], "fields": CONTACT["fields"][:fields]},
                        _write_hint=False)

ALL_TYPES = parse_schema({
    "type": "record", "name": "AllTypes", "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "s", "type": "string"},
        {"name": "y", "type": "bytes"},
        {"name": "n", "type": "null"},
        {"name": "u1", "type": ["null", "string"]},
        {"name": "u2", "type": ["long", "null"]},
        {"name": "m", "type": {"type": "map", "values": "long"}},
        {"name": "a", "type": {"type": "array", "items": "string"}},
        {"name": "weird key 'quoted'", "type": "boolean"},
    ],
})

longs = st.integers(-(2**63), 2**63 - 1)
ints = st.integers(-(2**31), 2**31 - 1)
text = st.text(max_size=30)

all_types_records = st.fixed_dictionaries({
    "b": st.booleans(), "i": ints, "l": longs, "s": text, "y": st.binary(max_size=20), "n": st.none(),
    "u1": st.one_of(st.none(), text), "u2": st.one_of(st.none(), longs),
    "m": st.dictionaries(text, longs, max_size=5), "a": st.lists(text, max_size=5),
    "weird key 'quoted'": st.booleans(),
})

contact_records = st.fixed_dictionaries({
    "event_id": text, "contact_id": text, "phone": text, "region_hint": st.one_of(st.none(), text),
    "first_name": st.one_of(st.none(), text), "last_name": st.one_of(st.none(), text),
    "email": st.one_of(st.none(), text), "opted_in": st.booleans(), "changed_at": longs, "source": text,
    "custom_fields": st.dictionaries(text, text, max_size=5),
    "time_zone": st.one_of(st.none(), text), "zip_code": st.one_of(st.none(), text),
    "state": st.one_of(st.none(), text),
})


#: Both readers: the C one (skipped where it was not built) and the generated Python one.
both = pytest.mark.parametrize("native", [
    pytest.param(True, id="c", marks=pytest.mark.skipif(not NATIVE, reason="C reader not built")),
    pytest.param(False, id="python"),
])


def encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, schema, record)
    return buf.getvalue()


def fastavro_read(schema: dict[str, Any], data: bytes) -> tuple[Any, int]:
    buf = io.BytesIO(data)
    return schemaless_reader(buf, schema, None), buf.tell()


def compiled_and_fastavro_reads(schema: dict[str, Any], record: dict[str, Any],
                                native: bool) -> tuple[Any, Any, int]:
    """``record`` written by fastavro, then read by the compiled reader and by fastavro."""
    reader = compile_reader(schema, native=native)
    assert reader is not None
    data = encode(schema, record)
    return reader(data, 0), fastavro_read(schema, data), len(data)


@both
@settings(max_examples=300, deadline=None)
@given(record=all_types_records)
def test_every_supported_type_reads_as_fastavro_reads_it(native: bool, record: dict[str, Any]) -> None:
    compiled, expected, size = compiled_and_fastavro_reads(ALL_TYPES, record, native)
    assert compiled == expected == (record, size)


@both
@settings(max_examples=300, deadline=None)
@given(record=contact_records)
def test_crm_records_read_as_fastavro_reads_them(native: bool, record: dict[str, Any]) -> None:
    compiled, expected, _ = compiled_and_fastavro_reads(CONTACT, record, native)
    assert compiled == expected


@both
@settings(max_examples=1000, deadline=None)
@given(record=contact_records, cut=st.integers(0, 200), flips=st.lists(st.tuples(st.integers(0, 199),
                                                                            st.integers(0, 255)), max_size=3),
       tail=st.binary(max_size=3))
def test_never_more_lenient_than_fastavro(native: bool, record: dict[str, Any], cut: int, flips: list[tuple[int, int]],
                                          tail: bytes) -> None:
    """Mangled bytes: whatever the compiled reader accepts, fastavro reads the same way."""
    data = bytearray(encode(CONTACT, record))
    for index, value in flips:
        if index < len(data):
            data[index] = value
    mangled = bytes(data[: max(0, len(data) - cut % (len(data) + 1))]) + tail
    reader = compile_reader(CONTACT, native=native)
    assert reader is not None
    try:
        ours = reader(mangled, 0)
    except (EOFError, UnicodeDecodeError, ValueError):
        return  # rejected (fastavro may or may not accept such bytes)
    # fastavro reads them the same way, as written by our schema or by an older one
    assert ours in [fastavro_read_as_written_by(n, mangled) for n in range(REQUIRED, len(CONTACT["fields"]) + 1)]


def fastavro_read_as_written_by(fields: int, data: bytes) -> Any:
    """fastavro's reading of ``data`` written with the first ``fields`` fields, resolved to ours."""
    buf = io.BytesIO(data)
    try:
        return schemaless_reader(buf, older_writer(fields), CONTACT), buf.tell()
    except Exception as exc:  # noqa: BLE001 - any refusal is an answer here
        return type(exc)


@both
@settings(max_examples=300, deadline=None)
@given(record=contact_records, fields=st.integers(REQUIRED, len(CONTACT["fields"])))
def test_records_written_before_fields_were_added_read_as_fastavro_resolves_them(
        native: bool, record: dict[str, Any], fields: int) -> None:
    """A schemaless record of an older ContactOptInChanged (without the fields added later)."""
    writer = older_writer(fields)
    data = encode(writer, {f["name"]: record[f["name"]] for f in writer["fields"]})
    reader = compile_reader(CONTACT, native=native)
    assert reader is not None
    got = reader(data, 0)
    assert got == fastavro_read_as_written_by(fields, data)
    assert got[0] == {**record, **{name: None for name in ADDED_LATER[fields - REQUIRED:]}}
    assert got[1] == len(data)


@both
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_arbitrary_bytes_raise_only_the_documented_errors(native: bool, data: bytes) -> None:
    reader = compile_reader(CONTACT, native=native)
    assert reader is not None
    try:
        record, end = reader(data, 0)
    except (EOFError, UnicodeDecodeError, ValueError):
        return
    assert 0 < end <= len(data) and set(record) == {f["name"] for f in CONTACT["fields"]}


@both
def test_truncation_and_malformed_input(native: bool) -> None:
    reader = compile_reader(CONTACT, native=native)
    assert reader is not None
    full = {"event_id": "e", "contact_id": "c", "phone": "+1", "region_hint": None, "first_name": None,
            "last_name": None, "email": None, "opted_in": True, "changed_at": 5, "source": "s",
            "custom_fields": {}, "time_zone": "America/Chicago", "zip_code": "60601", "state": "IL"}
    good = encode(CONTACT, full)
    # where a field added later begins, a record of an older writer ends: that is not a cut
    boundaries = {len(encode(older_writer(n), {f["name"]: full[f["name"]] for f in CONTACT["fields"][:n]}))
                  for n in range(REQUIRED, len(CONTACT["fields"]))}
    assert len(boundaries) == len(ADDED_LATER) and max(boundaries) < len(good)
    for cut in range(1, len(good)):
        if cut in boundaries:
            assert reader(good[:cut], 0)[1] == cut
            continue
        with pytest.raises(EOFError):
            reader(good[:cut], 0)
    with pytest.raises(ValueError, match="negative length"):
        reader(b"\x01", 0)  # a length of -1
    with pytest.raises(ValueError, match="more than 10 bytes"):
        read_long(b"\xff" * 11 + b"\x01", 0)
    assert read_long(b"\x80\x01", 0) == (64, 2)
    with pytest.raises(UnicodeDecodeError):
        reader(b"\x02\xff" + good[2:], 0)


def test_what_it_does_not_compile_is_left_to_fastavro() -> None:
    for schema in (
        {"type": "record", "name": "E", "fields": [{"name": "e", "type": {"type": "enum", "name": "X",
                                                                           "symbols": ["A"]}}]},
        {"type": "record", "name": "F", "fields": [{"name": "f", "type": "double"}]},
        {"type": "record", "name": "R", "fields": [{"name": "r", "type": {"type": "record", "name": "In",
                                                                           "fields": []}}]},
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", "string", "long"]}]},
        {"type": "record", "name": "T", "fields": [{"name": "t", "type": {"type": "long",
                                                                          "logicalType": "timestamp-millis"}}]},
    ):
        assert compile_reader(parse_schema(schema)) is None
    assert compile_reader("string") is None
    assert compile_reader(plain_schema("DncEntry")) is not None


def test_the_c_reader_was_built() -> None:
    """``pip install`` compiles it where a C compiler is found, as on every machine this
    project is tested on; a silent fallback to Python would only show as a slower benchmark."""
    if os.environ.get("CXONE_ALLOW_PURE_PYTHON") == "1":
        pytest.skip("CXONE_ALLOW_PURE_PYTHON=1")
    assert NATIVE
    assert type(compile_reader(CONTACT)).__name__ == "FlatReader"


def test_only_a_trailing_run_of_marked_null_default_fields_may_be_absent() -> None:
    assert ADDED_LATER == ["time_zone", "zip_code", "state"]
    assert required_fields(ALL_TYPES) == len(ALL_TYPES["fields"])
    assert required_fields(plain_schema("DncEntry")) == 4  # expires_at is optional but not marked

    def schema(*fields: dict[str, Any]) -> dict[str, Any]:
        return parse_schema({"type": "record", "name": "S", "fields": list(fields)})

    marked = {"name": "m", "type": ["null", "string"], "default": None, "x-added-later": True}
    plain = {"name": "p", "type": "string"}
    assert required_fields(schema(plain, marked)) == 1
    assert required_fields(schema(marked, plain)) == 2  # not at the end
    assert required_fields(schema(plain, {**marked, "default": "x", "type": ["string", "null"]})) == 2


def test_the_codec_reads_an_old_schemaless_record_with_nulls_for_the_new_fields() -> None:
    old = {"event_id": "e", "contact_id": "c", "phone": "+12123450123", "region_hint": None, "first_name": "A",
           "last_name": None, "email": None, "opted_in": True, "changed_at": 5, "source": "crm", "custom_fields": {}}
    data = encode(older_writer(REQUIRED), old)
    for wire_format in ("avro", "auto"):
        assert AvroCodec("ContactOptInChanged", wire_format=wire_format).decode(data) == {
            **old, "time_zone": None, "zip_code": None, "state": None}
    new = {**old, "time_zone": "America/Chicago", "zip_code": "60601-1234", "state": "IL"}
    assert AvroCodec("ContactOptInChanged").decode(AvroCodec("ContactOptInChanged").encode(new)) == new


def test_the_program_names_each_field_its_kind_union_and_container() -> None:
    assert flat_program(ALL_TYPES) == [
        ("b", 1, -1, 0), ("i", 2, -1, 0), ("l", 2, -1, 0), ("s", 3, -1, 0), ("y", 4, -1, 0), ("n", 0, -1, 0),
        ("u1", 3, 0, 0), ("u2", 2, 1, 0), ("m", 2, -1, 1), ("a", 3, -1, 2), ("weird key 'quoted'", 1, -1, 0),
    ]


@pytest.mark.skipif(not NATIVE, reason="C reader not built")
def test_the_c_reader_refuses_a_bad_program() -> None:
    from connector.serde._avro_flat import FlatReader

    for step in (("x", 9, -1, 0), ("x", 3, 2, 0), ("x", 3, -1, 7)):
        with pytest.raises(ValueError, match="bad program step 0"):
            FlatReader([step], read_long)
    for required in (-1, 2):
        with pytest.raises(ValueError, match="required"):
            FlatReader([("x", 3, -1, 0)], read_long, required)
    with pytest.raises(ValueError, match="more than 64 fields"):
        FlatReader([("x", 3, -1, 0)] * 65, read_long)


def outcome(reader: Any, data: bytes) -> Any:
    try:
        return reader(data, 0)
    except (EOFError, UnicodeDecodeError, ValueError) as exc:
        return type(exc)


varint_bytes = st.lists(st.integers(0x80, 0xFF), min_size=8, max_size=11).map(bytes)


@pytest.mark.skipif(not NATIVE, reason="C reader not built")
@settings(max_examples=1500, deadline=None)
@given(record=all_types_records, cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 399),
                                                                         st.integers(0, 255)), max_size=4),
       inserts=st.lists(st.tuples(st.integers(0, 399), varint_bytes), max_size=2), tail=st.binary(max_size=12))
def test_the_c_and_python_readers_agree_on_any_bytes(record: dict[str, Any], cut: int,
                                                     flips: list[tuple[int, int]],
                                                     inserts: list[tuple[int, bytes]], tail: bytes) -> None:
    """Same record or same error class, for mangled records with long varints spliced in."""
    data = bytearray(encode(ALL_TYPES, record))
    for index, value in flips:
        if index < len(data):
            data[index] = value
    for index, varint in inserts:
        data[index:index] = varint
    mangled = bytes(data[: max(0, len(data) - cut % (len(data) + 1))]) + tail
    for schema in (ALL_TYPES, CONTACT):
        c_reader, py_reader = compile_reader(schema, native=True), compile_reader(schema, native=False)
        assert outcome(c_reader, mangled) == outcome(py_reader, mangled)


@pytest.mark.skipif(not NATIVE, reason="C reader not built")
def test_the_c_reader_reads_ten_byte_varints_as_python_does() -> None:
    schema = parse_schema({"type": "record", "name": "L", "fields": [{"name": "l", "type": "long"},
                                                                     {"name": "s", "type": "string"}]})
    c_reader, py_reader = compile_reader(schema, native=True), compile_reader(schema, native=False)
    for varint in (b"\xff" * 9 + b"\x01", b"\xfe" * 9 + b"\x01", b"\xff" * 9 + b"\x7f", b"\x80" * 9 + b"\x00",
                   b"\xff" * 10 + b"\x01", b"\xff" * 9):
        data = varint + b"\x02a"
        assert outcome(c_reader, data) == outcome(py_reader, data)
    assert c_reader(b"\xff" * 9 + b"\x01" + b"\x02a", 0) == ({"l": -(2**63), "s": "a"}, 12)


@both
def test_a_bytearray_reads_as_bytes(native: bool) -> None:
    reader = compile_reader(ALL_TYPES, native=native)
    assert reader is not None
    record = {"b": True, "i": -3, "l": 2**40, "s": "é", "y": b"\x00", "n": None, "u1": None, "u2": 7,
              "m": {"k": 1}, "a": ["x"], "weird key 'quoted'": False}
    data = encode(ALL_TYPES, record)
    for form in (data, bytearray(data)):
        assert reader(form, 0) == (record, len(data))  # type: ignore[arg-type]


def test_a_record_wider_than_the_c_reader_takes_gets_the_python_one() -> None:
    wide = parse_schema({"type": "record", "name": "Wide",
                         "fields": [{"name": f"f{i}", "type": "long"} for i in range(65)]})
    reader = compile_reader(wide)
    assert reader is not None and type(reader).__name__ == "function"
    data = encode(wide, {f"f{i}": i for i in range(65)})
    assert reader(data, 0) == ({f"f{i}": i for i in range(65)}, len(data))
