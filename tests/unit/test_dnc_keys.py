"""connector.core.dnc_keys: list-and-number keys, legacy bare keys, other spellings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.dnc_keys import DncKey, DncKeyError, dnc_key, parse_dnc_key, valid_list_name
from connector.core.phones import PhoneNormalizer

_US = PhoneNormalizer("US", cache_size=0)


def normalise(spelling: str) -> str | None:
    try:
        return _US.normalize(spelling)
    except Exception:
        return None


def test_list_and_number_round_trip() -> None:
    key = dnc_key("national", "+14155550100")
    assert key == b"national/+14155550100"
    assert parse_dnc_key(key, normalise) == DncKey("+14155550100", "national")


def test_a_bare_number_is_a_legacy_key_without_a_list() -> None:
    assert parse_dnc_key(b"+14155550100", normalise) == DncKey("+14155550100", None)


def test_a_national_spelling_is_normalised_with_the_default_region() -> None:
    assert parse_dnc_key(b"crm-opt-out/(415) 555-0100", normalise) == DncKey("+14155550100", "crm-opt-out", True)
    assert parse_dnc_key(b"415-555-0100", normalise) == DncKey("+14155550100", None, True)


@pytest.mark.parametrize(("key", "reason"), [
    (None, "missing"), (b"", "missing"), (b"\xff\xfe", "not_utf8"), (b"bad list/+14155550100", "bad_list"),
    (b"national/hello", "not_a_number"), (b"national/", "not_a_number"), (b"+1", "not_a_number"),
    (b"+0123456789", "not_a_number"),
])
def test_keys_without_a_number_are_refused_with_a_reason(key: bytes | None, reason: str) -> None:
    with pytest.raises(DncKeyError) as info:
        parse_dnc_key(key, normalise)
    assert info.value.reason == reason
    assert key is None or not key or key.decode("utf-8", "replace") not in str(info.value)


def test_writing_refuses_bad_lists_and_numbers() -> None:
    with pytest.raises(ValueError, match="list"):
        dnc_key("a/b", "+14155550100")
    with pytest.raises(ValueError, match="E.164"):
        dnc_key("national", "4155550100")
    assert not valid_list_name("") and not valid_list_name("x" * 65) and valid_list_name("crm-opt-out")


@given(st.binary(max_size=40))
def test_any_bytes_parse_or_raise_dnc_key_error(key: bytes) -> None:
    try:
        parsed = parse_dnc_key(key, normalise)
    except DncKeyError:
        return
    assert parsed.e164.startswith("+") and parsed.e164[1:].isdigit()


@given(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True), st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True))
def test_every_written_key_reads_back(list_name: str, e164: str) -> None:
    assert parse_dnc_key(dnc_key(list_name, e164), normalise) == DncKey(e164, list_name)
