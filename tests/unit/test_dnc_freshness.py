"""connector.core.dnc_freshness: the age of each list's registry copy, with an injected clock."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.dnc_freshness import (
    DAY_S,
    ListPolicy,
    ListRefresh,
    evaluate,
    refresh_from_record,
    refresh_to_record,
)

AS_OF = dt.date(2026, 3, 1)
MIDNIGHT = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc).timestamp()
NATIONAL = {"national": ListPolicy(max_age_days=31)}


def refresh(as_of: dt.date = AS_OF, name: str = "national") -> ListRefresh:
    return ListRefresh(name, "ftc-2026-03-01.zip", as_of, 1_772_400_000_000, 1000, 10, 2)


def at(day: float) -> float:
    """Unix seconds, ``day`` days after AS_OF 00:00 UTC."""
    return MIDNIGHT + day * DAY_S


def test_stale_at_day_31_not_at_day_30() -> None:
    records = {"national": refresh()}
    assert evaluate(records, NATIONAL, at(30)).ok
    assert evaluate(records, NATIONAL, at(31) - 1).ok          # 31 March 23:59:59 UTC
    report = evaluate(records, NATIONAL, at(31))               # 1 April 00:00 UTC
    assert not report.ok
    assert report.reason == ("DNC list 'national' is stale: registry copy of 2026-03-01 is 31.0 days old "
                             "(limit 31 days)")
    assert report.blocking[0].age_s == 31 * DAY_S


def test_a_list_with_a_limit_and_no_record_is_stale() -> None:
    report = evaluate({}, NATIONAL, at(0))
    assert not report.ok
    assert "'national' has no refresh record (limit 31 days)" in report.reason
    unreadable = evaluate({}, NATIONAL, at(0), unreadable={"national"})
    assert "an unreadable refresh record" in unreadable.reason


def test_lists_without_a_limit_are_never_stale_and_unenforced_ones_do_not_block() -> None:
    records = {"national": refresh(), "internal": refresh(name="internal")}
    policies = {"national": ListPolicy(max_age_days=31, enforce=False), "crm-opt-out": ListPolicy()}
    report = evaluate(records, policies, at(100))
    assert report.ok
    assert [f.list_name for f in report.lists] == ["crm-opt-out", "internal", "national"]
    assert [f.stale for f in report.lists] == [False, False, True]
    assert report.reason.endswith("(not enforced)")


def test_enforced_reasons_come_first_and_never_a_number() -> None:
    records = {"a": refresh(name="a"), "b": refresh(name="b")}
    policies = {"a": ListPolicy(10, enforce=False), "b": ListPolicy(10)}
    reason = evaluate(records, policies, at(12)).reason
    assert reason.index("'b'") < reason.index("'a'")
    assert "1000" not in reason and "+1" not in reason


def test_the_avro_record_round_trips() -> None:
    r = refresh()
    record = refresh_to_record(r)
    assert record["as_of"] == 20513  # days since 1970-01-01
    assert refresh_from_record(record) == r
    with pytest.raises(ValueError, match="not a DncListRefresh"):
        refresh_from_record({"list_name": "x"})


@given(st.integers(1, 400), st.floats(0, 500, allow_nan=False))
def test_stale_exactly_from_the_limit(limit: int, day: float) -> None:
    report = evaluate({"n": refresh(name="n")}, {"n": ListPolicy(limit)}, at(day))
    assert report.ok == (day * DAY_S < limit * DAY_S)
