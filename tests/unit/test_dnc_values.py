"""connector.core.dnc_values: the DncEntry reader accepts what fastavro reads, and nothing else."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from connector.core.dnc_values import CACHE_SIZE, ValueReader, read_dnc_value
from connector.errors import SerdeError
from connector.serde.codec import frame, plain_schema

SCHEMA = plain_schema("DncEntry")
INT64 = st.integers(-(2**63), 2**63 - 1)


def encode(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA, record)
    return buf.getvalue()


def fastavro_read(data: bytes) -> tuple[str, int | None] | None:
    """fastavro's answer: the two fields, or None when it fails or leaves bytes over."""
    buf = io.BytesIO(data)
    try:
        record = fastavro.schemaless_reader(buf, SCHEMA, None)
    except Exception:
        return None
    if buf.tell() != len(data) or not isinstance(record, dict):
        return None
    return record["list_name"], record["expires_at"]


records = st.fixed_dictionaries({
    "list_name": st.text(max_size=70), "reason": st.one_of(st.none(), st.text(max_size=20)),
    "added_at": INT64, "expires_at": st.one_of(st.none(), INT64),
})


@given(records)
def test_every_record_fastavro_writes_reads_the_same(record: dict[str, Any]) -> None:
    assert read_dnc_value(encode(record)) == (record["list_name"], record["expires_at"])


def mangle(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, byte in edits:
        if not out:
            out.append(byte)
            continue
        i = where % len(out)
        if kind == 0:
            out[i] = byte
        elif kind == 1:
            out.insert(i, byte)
        else:
            del out[i]
    return bytes(out)


def check_against_fastavro(data: bytes) -> None:
    expected = fastavro_read(data)
    try:
        got = read_dnc_value(data)
    except SerdeError as exc:
        # Refused: fastavro refuses too, unless the bytes hold a varint fastavro wraps to 64 bits,
        # or a union index of -1 or -2, which fastavro takes as a Python list index.
        assert expected is None or any(why in str(exc) for why in (
            "longer than 10 bytes", "outside 64 bits", "union branch out of range"))
        return
    assert got == expected  # accepted: exactly what fastavro reads


@settings(max_examples=500)
@given(records, st.lists(st.tuples(st.integers(0, 2), st.integers(0, 200), st.integers(0, 255)), max_size=4))
@example({"list_name": "ab", "reason": None, "added_at": 1, "expires_at": None}, [(1, 6, 0x80)])
@example({"list_name": "", "reason": None, "added_at": 0, "expires_at": None}, [(0, 1, 3)])  # union index -2
def test_mangled_values_are_accepted_only_as_fastavro_reads_them(
    record: dict[str, Any], edits: list[tuple[int, int, int]]
) -> None:
    check_against_fastavro(mangle(encode(record), edits))


@settings(max_examples=500)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_are_accepted_only_as_fastavro_reads_them(data: bytes) -> None:
    check_against_fastavro(data)


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (b"\x04ab\x00\x02\x00extra", "trailing"),
    (b"\x04ab\x04\x02\x00", "union"),
    (b"\x03ab\x00\x02\x00", "negative"),
    (b"\x04\xff\xfe\x00\x02\x00", "UTF-8"),
    (b"\x04ab\x02\x02\xff\x02\x00", "UTF-8"),       # the reason is checked too
    (b"\x04ab\x00" + b"\xff" * 10 + b"\x01\x00", "longer than 10"),
    (b"\x04ab\x00" + b"\xff" * 9 + b"\x7f\x00", "outside 64 bits"),
    (b"\x08ab", "truncated"),
])
def test_unreadable_values_are_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(SerdeError, match=why):
        read_dnc_value(data)


def test_the_reader_handles_framing_and_remembers_values() -> None:
    value = encode({"list_name": "national", "reason": None, "added_at": 1, "expires_at": 5})
    assert ValueReader("avro").read(value) == ("national", 5)
    assert ValueReader("confluent").read(frame(7, value)) == ("national", 5)
    assert ValueReader("auto").read(frame(7, value)) == ("national", 5)
    assert ValueReader("auto").read(value) == ("national", 5)
    with pytest.raises(SerdeError, match="magic"):
        ValueReader("confluent").read(value)
    reader = ValueReader()
    for i in range(CACHE_SIZE + 10):  # bounded: the cache starts over when full
        reader.read(encode({"list_name": f"l{i}", "reason": None, "added_at": i, "expires_at": None}))
    assert len(reader._cache) <= CACHE_SIZE
    with pytest.raises(SerdeError):
        reader.read(b"\x08ab")
    with pytest.raises(ValueError):
        ValueReader("json")  # type: ignore[arg-type]
