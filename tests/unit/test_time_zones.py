"""connector.core.time_zones: the calling-hours time zone of a record, and its tables."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as pn_timezone

from connector.core import time_zone_data as data
from connector.core import time_zones as tz
from connector.core.time_zones import SOURCES, TimeZoneResolver

NY = "+12123450123"  # a valid New York number (212 is America/New_York)
EL_PASO = "+19153456789"  # 915: America/Denver
TOLL_FREE = "+18003456789"


def test_the_order_is_event_zip_state_number_default() -> None:
    r = TimeZoneResolver("America/Phoenix")
    assert r.resolve("America/Chicago", "79901", "CA", NY) == ("America/Chicago", "event")
    assert r.resolve(None, "79901", "CA", NY) == ("America/Denver", "zip")
    assert r.resolve(None, None, "CA", NY) == ("America/Los_Angeles", "state")
    assert r.resolve(None, None, None, NY) == ("America/New_York", "number")
    assert r.resolve(None, None, None, TOLL_FREE) == ("America/Phoenix", "default")
    assert TimeZoneResolver().resolve(None, None, None, TOLL_FREE) == ("", "unknown")


def test_an_event_zone_is_taken_in_any_case_and_sent_as_the_database_spells_it() -> None:
    r = TimeZoneResolver()
    assert r.resolve(" america/new_york ", None, None, TOLL_FREE) == ("America/New_York", "event")
    assert r.resolve("Europe/Paris", None, None, NY) == ("Europe/Paris", "event")


@pytest.mark.parametrize("bad", ["Mars/Olympus_Mons", "Factory", "localtime", "", "../etc/passwd",
                                 "America/Chicago" * 10, "EST5EDT\x00"])
def test_an_unknown_event_zone_falls_through_to_the_next_source(bad: str) -> None:
    assert TimeZoneResolver().resolve(bad, "10001", None, TOLL_FREE) == ("America/New_York", "zip")


@pytest.mark.parametrize(("zip_code", "zone"), [
    ("10001", "America/New_York"), ("79901", "America/Denver"), ("79901-1234", "America/Denver"),
    ("79901 1234", "America/Denver"), ("799011234", "America/Denver"), (" 60601 ", "America/Chicago"),
    ("96813", "Pacific/Honolulu"), ("99501", "America/Anchorage"), ("00901", "America/Puerto_Rico"),
])
def test_zip_codes_in_their_accepted_spellings(zip_code: str, zone: str) -> None:
    assert tz.zone_for_zip(zip_code) == zone
    assert TimeZoneResolver().resolve(None, zip_code, "NY", NY) == (zone, "zip")


@pytest.mark.parametrize("bad", ["1234", "123456", "12345-678", "abcde", "１２３４５", "000", "00000", "12345--6789"])
def test_a_zip_code_that_is_malformed_or_unknown_gives_nothing(bad: str) -> None:
    assert tz.zone_for_zip(bad) is None
    assert TimeZoneResolver().resolve(None, bad, "CA", NY) == ("America/Los_Angeles", "state")


def test_a_zip_code_whose_zone_differs_from_its_prefix_is_exact() -> None:
    # 324xx (Florida panhandle) is mostly Central; the table's exceptions are Eastern
    exceptions = sorted(code for code in data.ZIP5 if code.startswith("324"))
    assert exceptions, "the table should hold 324xx exceptions"
    assert data.ZIP3["324"] == "America/Chicago"
    for code in exceptions:
        assert tz.zone_for_zip(code) == data.ZIP5[code] != "America/Chicago"


def test_a_state_within_one_offset_class_gives_its_zone_by_code_or_name() -> None:
    r = TimeZoneResolver()
    assert r.resolve(None, None, "ca", TOLL_FREE) == ("America/Los_Angeles", "state")
    assert r.resolve(None, None, "New  York", TOLL_FREE) == ("America/New_York", "state")
    assert r.resolve(None, None, "district of columbia", TOLL_FREE) == ("America/New_York", "state")


def test_a_state_spanning_two_classes_takes_the_numbers_class_else_the_one_with_most_zip_codes() -> None:
    r = TimeZoneResolver()
    assert r.resolve(None, None, "TX", EL_PASO) == ("America/Denver", "state")  # the number says Mountain
    assert r.resolve(None, None, "TX", NY) == ("America/Chicago", "state")  # Eastern is not Texan
    assert r.resolve(None, None, "TX", TOLL_FREE) == ("America/Chicago", "state")  # no single zone
    assert r.resolve(None, None, "FL", TOLL_FREE) == ("America/New_York", "state")


@pytest.mark.parametrize("bad", ["XX", "Atlantis", "", "T", "A" * 100])
def test_an_unknown_state_falls_through_to_the_number(bad: str) -> None:
    assert TimeZoneResolver().resolve(None, None, bad, NY) == ("America/New_York", "number")


def test_a_number_gives_a_zone_only_when_phonenumbers_gives_exactly_one() -> None:
    assert tz.number_zone(NY) == "America/New_York"
    assert tz.number_zone("+33612345678") == "Europe/Paris"
    assert tz.number_zone(TOLL_FREE) is None  # the whole of NANP
    assert tz.number_zone("+447911123456") is None  # London, Guernsey, Jersey, Isle of Man
    assert tz.number_zone("not a number") is None


def test_the_default_must_be_a_known_zone_and_is_canonical() -> None:
    assert TimeZoneResolver("america/chicago").default_time_zone == "America/Chicago"
    with pytest.raises(ValueError, match="default_time_zone"):
        TimeZoneResolver("Central Standard Time")
    with pytest.raises(ValueError, match="cache_size"):
        TimeZoneResolver(cache_size=-1)


def test_the_number_cache_is_bounded_and_asks_phonenumbers_once_per_number() -> None:
    r = TimeZoneResolver(cache_size=4)
    for i in range(50):
        r.resolve(None, None, None, f"+1212345{i:04d}")
    assert len(r._young) + len(r._old) <= 4
    before = r.misses
    assert r.resolve(None, None, None, "+12123450049") == ("America/New_York", "number")
    assert r.misses == before  # the last one is still cached
    uncached = TimeZoneResolver(cache_size=0)
    uncached.resolve(None, None, None, NY)
    uncached.resolve(None, None, None, NY)
    assert uncached.misses == 2 and not uncached._young


def test_the_tables_name_only_zones_the_database_knows() -> None:
    known = set(tz.known_zones().values())
    zones = set(data.ZIP3.values()) | set(data.ZIP5.values()) | {z for c in data.STATES.values() for _, z, _ in c}
    assert zones <= known
    assert set(data.ZONE_CLASS) <= known
    assert all(len(k) == 3 and k.isdigit() for k in data.ZIP3)
    assert all(len(k) == 5 and k.isdigit() and data.ZIP3.get(k[:3]) != v for k, v in data.ZIP5.items())
    for state, classes in data.STATES.items():
        counts = [n for _, _, n in classes]
        assert counts == sorted(counts, reverse=True), state
        assert len({c for c, _, _ in classes}) == len(classes), state
        assert all(data.ZONE_CLASS[z] == c for c, z, _ in classes), state
    assert set(data.STATE_NAMES.values()) <= set(data.STATES)
    assert len(data.STATES) >= 51  # 50 states and DC, and territories


text = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(
    ["America/Chicago", "79901", "79901-1234", "TX", "Texas", "00000", "Factory"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(time_zone=text, zip_code=text, state=text, e164=st.one_of(st.text(max_size=20), st.sampled_from(
    [NY, EL_PASO, TOLL_FREE, "+447911123456", "+33612345678", "+9991234567", "+1"])))
def test_arbitrary_inputs_never_raise_and_give_a_known_zone_or_none(
        time_zone: str | None, zip_code: str | None, state: str | None, e164: str) -> None:
    zone, source = TimeZoneResolver().resolve(time_zone, zip_code, state, e164)
    assert source in SOURCES
    assert (zone == "") == (source == "unknown")
    if zone:
        assert tz.known_zones()[zone.lower()] == zone


@st.composite
def valid_numbers(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
    example = phonenumbers.example_number(region)
    if example is None:
        return "+12123456789"
    nsn = str(example.national_number)
    digits = draw(st.lists(st.integers(0, 9), min_size=0, max_size=len(nsn) - 1))
    # keep the example's leading digits, vary the rest: mostly valid numbers of that region
    candidate = nsn[:len(nsn) - len(digits)] + "".join(map(str, digits))
    try:
        parsed = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return "+12123456789"
    if not phonenumbers.is_valid_number(parsed):
        return "+12123456789"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_numbers())
def test_the_number_zone_is_phonenumbers_own_answer(e164: str) -> None:
    expected = tz.single_zone(pn_timezone.time_zones_for_number(phonenumbers.parse(e164)))
    assert tz.number_zone(e164) == expected
