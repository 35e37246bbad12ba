"""Unit tests for connector.core.phones: E.164 normalisation, rejection reasons, the cache."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.phones import E164_RE, MAX_RAW_LENGTH, PhoneNormalizer, mask_phone
from connector.errors import PhoneError


@pytest.fixture
def norm() -> PhoneNormalizer:
    return PhoneNormalizer("US", cache_size=1000)


@pytest.mark.parametrize(
    ("raw", "hint", "expected"),
    [
        ("(415) 555-0123", None, "+14155550123"),
        ("415.555.0123", None, "+14155550123"),
        ("+1 415 555 0123", None, "+14155550123"),
        ("  +44 20 7946 0958 ", None, "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "gb", "+442079460958"),
        ("01 42 68 53 00", "FR", "+33142685300"),
        # An unknown hint is ignored; the default region applies.
        ("415-555-0123", "ZZ", "+14155550123"),
        # The hint is tried first, then the default region.
        ("415-555-0123", "GB", "+14155550123"),
    ],
)
def test_normalises(norm: PhoneNormalizer, raw: str, hint: str | None, expected: str) -> None:
    assert norm.normalize(raw, hint) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1" * (MAX_RAW_LENGTH + 1), "too_long"),
        ("415\x00555\x000123", "unparseable"),
        ("not a number", "unparseable"),
        ("+1 415 555 0123 4567 8901 2345", "too_long"),
        ("12", "not_possible"),
        ("+1 415 555 01", "not_possible"),
        ("+1 099 555 0123", "invalid"),
    ],
)
def test_rejects_with_reason(norm: PhoneNormalizer, raw: str, reason: str) -> None:
    with pytest.raises(PhoneError) as info:
        norm.normalize(raw)
    assert info.value.reason == reason
    assert info.value.retriable is False


def test_message_never_holds_the_number(norm: PhoneNormalizer) -> None:
    with pytest.raises(PhoneError) as info:
        norm.normalize("+1 099 555 0187")
    message = str(info.value)
    assert "0995550187" not in message.replace(" ", "")
    assert "555" not in message
    assert "***87" in message


def test_mask_phone_keeps_only_last_two_digits() -> None:
    assert mask_phone("+1 (415) 555-0123") == "***23"
    assert mask_phone("") == "***"
    assert mask_phone("7") == "***7"


def test_cache_serves_repeats_and_rejections(norm: PhoneNormalizer) -> None:
    assert norm.normalize("(415) 555-0123") == "+14155550123"
    assert norm.normalize("(415) 555-0123") == "+14155550123"
    assert (norm.hits, norm.misses) == (1, 1)
    for _ in range(2):
        with pytest.raises(PhoneError) as info:
            norm.normalize("+1 099 555 0123")
        assert info.value.reason == "invalid"
    assert (norm.hits, norm.misses) == (2, 2)
    # The key includes the region hint.
    assert norm.normalize("(415) 555-0123", "CA") == "+14155550123"
    assert norm.misses == 3


def test_cache_is_bounded_and_drops_old_generations() -> None:
    norm = PhoneNormalizer("US", cache_size=20)
    numbers = [f"415555{n:04d}" for n in range(100, 140)]
    for raw in numbers:
        norm.normalize(raw)
        assert norm.cache_len() <= 20
    assert norm.misses == 40
    norm.normalize(numbers[-1])  # recent: served from the cache
    assert norm.hits == 1
    norm.normalize(numbers[0])  # two generations ago: parsed again
    assert norm.misses == 41


def test_a_number_in_use_survives_generation_changes() -> None:
    norm = PhoneNormalizer("US", cache_size=20)
    kept, others = "4155550100", [f"415555{n:04d}" for n in range(200, 260)]
    norm.normalize(kept)
    norm.normalize(others[0])  # never used again
    for raw in others[1:]:
        norm.normalize(raw)
        norm.normalize(kept)  # a hit every time: moved up to the young generation when old
    assert norm.misses == len(others) + 1
    norm.normalize(others[0])
    assert norm.misses == len(others) + 2  # the unused one was dropped


def test_cache_can_be_disabled() -> None:
    norm = PhoneNormalizer("US", cache_size=0)
    norm.normalize("4155550123")
    norm.normalize("4155550123")
    assert norm.cache_len() == 0 and norm.misses == 2


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="region"):
        PhoneNormalizer("XX")
    with pytest.raises(ValueError, match="cache_size"):
        PhoneNormalizer("US", cache_size=-1)
    assert PhoneNormalizer("gb").default_region == "GB"


_phoneish = st.text(alphabet="0123456789+-() .x#*", max_size=30)
_hints = st.one_of(st.none(), st.sampled_from(["US", "GB", "FR", "DE", "IN", "BR", "ZZ", "", "us", "001"]))


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(st.text(max_size=80), _phoneish), hint=_hints)
def test_arbitrary_input_gives_e164_or_phone_error(raw: str, hint: str | None) -> None:
    norm = PhoneNormalizer("US", cache_size=16)
    for _ in range(2):  # second round comes from the cache and must agree
        try:
            result = norm.normalize(raw, hint)
        except PhoneError as exc:
            assert exc.reason in {"empty", "too_long", "unparseable", "invalid", "not_possible"}
        else:
            assert E164_RE.match(result)


@settings(max_examples=200, deadline=None)
@given(national=st.integers(2_000_000_000, 9_999_999_999))
def test_us_national_numbers_round_trip(national: int) -> None:
    norm = PhoneNormalizer("US", cache_size=0)
    try:
        result = norm.normalize(str(national))
    except PhoneError as exc:
        assert exc.reason in {"invalid", "not_possible"}
    else:
        assert result == f"+1{national}"
        assert norm.normalize(result) == result


def test_every_spelling_of_a_number_is_parsed_once() -> None:
    norm = PhoneNormalizer("US")
    spellings = ["(212) 345-6789", "+1 212 345 6789", "212.345.6789", "1-212-345-6789", "+12123456789",
                 "2123456789"]
    assert {norm.normalize(s) for s in spellings} == {"+12123456789"}
    assert norm.misses == 1 and norm.hits == len(spellings) - 1


def test_a_rejected_spelling_never_rejects_a_parseable_one() -> None:
    norm = PhoneNormalizer("US")
    with pytest.raises(PhoneError):
        norm.normalize("212-345-678")  # one digit short
    assert norm.normalize("212-345-6789") == "+12123456789"


@given(
    st.sampled_from(["+12123456789", "+14155550123", "+16135550123", "+442079460958", "+447911123456",
                     "+4930123456", "+390612345678", "+61291234567"]),
    st.sampled_from(["US", "CA", "GB", "DE", "IT", "AU"]),
)
def test_cached_aliases_agree_with_a_fresh_parse(e164: str, region: str) -> None:
    warm = PhoneNormalizer(region)
    try:
        warm.normalize(e164)
    except PhoneError:
        pass
    digits = e164[1:]
    spellings = {e164, digits, "0" + digits[1:], "0" + digits[2:], digits[1:], digits[2:], "1" + digits[1:]}
    for spelling in sorted(spellings):
        try:
            expected: str | None = PhoneNormalizer(region, cache_size=0).normalize(spelling)
        except PhoneError:
            expected = None
        try:
            got: str | None = warm.normalize(spelling)
        except PhoneError:
            got = None
        assert got == expected, spelling
