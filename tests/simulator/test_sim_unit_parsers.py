"""Pure parsers: v2 bulk-insert validation, call-lists CSV files, JWTs."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.simulator.csvfile import canonical_phone, decode_file, parse_records
from connector.simulator.exceptions import ApiError
from connector.simulator.tokens import decode_jwt, encode_jwt
from connector.simulator.validation import is_e164, validate_bulk_insert


def error_of(fn: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        fn(*args)
    assert err.value.status == 400
    return err.value


def body(items: list[Any], list_id: Any = "L1") -> dict[str, Any]:
    return {"contactListId": list_id, "items": items}


def test_valid_bulk_insert() -> None:
    ok = validate_bulk_insert(body([{"phoneNumber": "+14155551001", "firstName": "A", "lastName": "B",
                                     "email": "a@example.com", "customFields": {"x": "y", "n": 3}}]), 10)
    assert ok.contact_list_id == "L1" and len(ok.items) == 1


def test_too_many_items_names_the_first_index_past_the_limit() -> None:
    err = error_of(validate_bulk_insert, body([{"phoneNumber": "+14155551001"}] * 11), 10)
    assert err.code == "too_many_items" and err.extra["index"] == 10 and "at most 10" in err.message


@pytest.mark.parametrize(("item", "field", "reason"), [
    ({"phoneNumber": "4155551001"}, "phoneNumber", "E.164"),
    ({"phoneNumber": "+04155551001"}, "phoneNumber", "E.164"),
    ({"phoneNumber": 14155551001}, "phoneNumber", "string"),
    ({}, "phoneNumber", "missing"),
    ({"phoneNumber": "+14155551001", "firstName": 3}, "firstName", "string"),
    ({"phoneNumber": "+14155551001", "email": "nope"}, "email", "e-mail"),
    ({"phoneNumber": "+14155551001", "customFields": []}, "customFields", "object"),
    ({"phoneNumber": "+14155551001", "customFields": {"a": {"b": 1}}}, "customFields.a", "strings"),
    ({"phoneNumber": "+14155551001", "extra": 1}, "extra", "unknown"),
    ("+14155551001", None, "object"),
])
def test_bad_item_is_named_by_index_field_and_reason(item: Any, field: str | None, reason: str) -> None:
    err = error_of(validate_bulk_insert, body([{"phoneNumber": "+14155551000"}, item]), 10)
    assert err.code == "invalid_item"
    assert err.extra["index"] == 1 and err.extra["field"] == field and reason in err.extra["reason"]


@pytest.mark.parametrize("payload", [[], "x", {"items": []}, body([], "L"), body("x"), body([{}], ""),
                                     body([{}], 5), {**body([{}]), "other": 1}])
def test_bad_body_shapes(payload: Any) -> None:
    assert error_of(validate_bulk_insert, payload, 10).code == "invalid_body"


@given(st.text(max_size=20))
def test_e164_matches_its_definition(text: str) -> None:
    assert not is_e164("+14155551001\n")
    expected = bool(re.fullmatch(r"\+[1-9][0-9]{1,14}", text)) and text.isascii()
    assert is_e164(text) == expected


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                            max_size=4), max_leaves=20))
def test_validation_never_crashes(payload: Any) -> None:
    try:
        validate_bulk_insert(payload, 3)
    except ApiError as exc:
        assert exc.status == 400 and exc.message


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_csv_records_keep_digits_only() -> None:
    records = parse_records(decode_file(b64("id,phone,first\n1,+1 (415) 555-1001,Al\n\n2,14155551002,Bo\n"),
                                        1000), "id", "phone", 10, 512)
    assert [(r.external_id, r.phone) for r in records] == [("1", "14155551001"), ("2", "14155551002")]
    assert records[0].fields == {"id": "1", "phone": "+1 (415) 555-1001", "first": "Al"}


@pytest.mark.parametrize(("raw", "code"), [
    ("not base64!!", "invalid_file"), (base64.b64encode(b"\xff\xfe\x00").decode(), "invalid_file"),
    ("", "invalid_file"), (b64("x" * 2000), "file_too_large"),
])
def test_decode_file_errors(raw: str, code: str) -> None:
    assert error_of(decode_file, raw, 1000).code == code


@pytest.mark.parametrize(("text", "code", "words"), [
    ("id,name\n1,a\n", "invalid_file", "no column 'phone'"),
    ("phone\n14155551001\n", "invalid_file", "no column 'id'"),
    ("id,phone\n", "invalid_file", "no records"),
    ("id,phone\n1,14155551001,extra\n", "invalid_file", "row 2 has 3 columns"),
    ("id,phone\n1,abc\n", "invalid_file", "row 2"),
    ("id,phone\n,14155551001\n", "invalid_file", "empty"),
    ('id,phone\n1,"1415\n', "invalid_file", "CSV"),
    ("id,phone\n" + "1,14155551001\n" * 4, "too_many_records", "more than 3"),
    ("id,phone\n" + "x" * 600 + ",14155551001\n", "record_too_long", "512"),
    ("id,id,phone\n1,1,2\n", "invalid_file", "repeats"),
])
def test_parse_records_errors(text: str, code: str, words: str) -> None:
    err = error_of(parse_records, text, "id", "phone", 3, 512)
    assert err.code == code and words in err.message


@given(st.lists(st.tuples(st.text(alphabet="abcXYZ019-_ ", min_size=1, max_size=10).filter(str.strip),
                          st.text(alphabet="0123456789", min_size=2, max_size=15)), min_size=1, max_size=30))
def test_csv_round_trip(rows: list[tuple[str, str]]) -> None:
    text = "ext,tel\n" + "".join(f'"{e}",+{p}\n' for e, p in rows)
    records = parse_records(decode_file(b64(text), 10**6), "ext", "tel", 1000, 512)
    assert [(r.external_id, r.phone) for r in records] == [(e.strip(), p) for e, p in rows]


def test_canonical_phone_bounds() -> None:
    assert canonical_phone("+44 20 7946 0958") == "442079460958"
    for bad in ("", "1", "1" * 16):
        with pytest.raises(ValueError):
            canonical_phone(bad)


def test_jwt_round_trip_and_tampering() -> None:
    token = encode_jwt({"tenantId": "t1", "exp": 5}, b"k")
    assert token.count(".") == 2
    assert decode_jwt(token, b"k")["tenantId"] == "t1"
    with pytest.raises(ValueError, match="signature"):
        decode_jwt(token, b"other")
    with pytest.raises(ValueError, match="3"):
        decode_jwt("a.b", b"k")
    head, _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"tenantId":"t2"}').rstrip(b"=").decode()
    with pytest.raises(ValueError):
        decode_jwt(f"{head}.{forged}.{sig}", b"k")
