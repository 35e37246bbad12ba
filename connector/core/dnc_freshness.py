"""How old each DNC list's registry copy is, and which lists are too old to call with.

Pure: the refresh records (``DncListRefresh`` values of the compacted ``dnc.lists`` topic,
one per list, written by ``cxone-connector dnc sync``), the policies (``[dnc.lists.<name>]``
in the configuration) and ``now`` (Unix seconds) are all passed in.

The FTC safe harbor (16 CFR 310.4(b)(3)(iv)) allows calls with a registry copy accessed no
more than 31 days before. A refresh record carries the date of the access (``as_of``). Its
age is counted from the **start of that date, 00:00 UTC**, so a list with
``max_age_days = 31`` synced ``as_of`` 1 March is fresh through 31 March and stale from
1 April 00:00 UTC: stale at day 31, not at day 30. Counting from the start of the day never
makes a copy look younger than it is, whatever the operator's time zone.

A list is **stale** when it has a limit and its record is at least that old, or when it has
a limit and no readable record at all (fail closed). A stale list whose policy says
``enforce = false`` is reported but does not stop submission. Reasons name the list, its
age and its limit: never a number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

DAY_S = 86_400.0
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class ListPolicy:
    """How fresh one list must be.

    Attributes:
        max_age_days: the oldest registry copy submission may rely on, in days; None: no
            limit.
        enforce: stop submission while the list is stale (False: report it only).
    """

    max_age_days: int | None = None
    enforce: bool = True


@dataclass(frozen=True)
class ListRefresh:
    """One ``DncListRefresh`` record: a list's last sync.

    Attributes:
        list_name: the list.
        source: where the data came from (a file name, or ``--source``).
        as_of: the date the registry was accessed (the download's date).
        synced_at_ms: when the sync was acknowledged, epoch milliseconds.
        numbers: numbers on the list after the sync.
        adds: entries the sync wrote.
        removes: tombstones the sync wrote.
        invalid: lines of the file the sync skipped as invalid.
        mode: ``FULL`` or ``CHANGES`` (``UNKNOWN`` for a later writer's symbol).
    """

    list_name: str
    source: str
    as_of: dt.date
    synced_at_ms: int
    numbers: int
    adds: int
    removes: int
    invalid: int = 0
    mode: str = "FULL"

    @property
    def as_of_s(self) -> float:
        """``as_of`` at 00:00 UTC, in Unix seconds."""
        return (self.as_of - _EPOCH).days * DAY_S

    def age_s(self, now: float) -> float:
        """Seconds since ``as_of`` 00:00 UTC (negative for a date after ``now``)."""
        return now - self.as_of_s


def date_to_days(day: dt.date) -> int:
    """Days since 1970-01-01: the Avro ``date`` logical type."""
    return (day - _EPOCH).days


def refresh_to_record(refresh: ListRefresh) -> dict[str, Any]:
    """The ``DncListRefresh`` Avro record of ``refresh``."""
    return {
        "list_name": refresh.list_name, "source": refresh.source, "as_of": date_to_days(refresh.as_of),
        "synced_at": refresh.synced_at_ms, "numbers": refresh.numbers, "adds": refresh.adds,
        "removes": refresh.removes, "invalid": refresh.invalid, "mode": refresh.mode,
    }


def refresh_from_record(record: Mapping[str, Any]) -> ListRefresh:
    """Read a decoded ``DncListRefresh`` record (dates as days, timestamps as epoch ms).

    Raises:
        ValueError: a field is missing or of the wrong type, or the date is out of range.
    """
    try:
        as_of = _EPOCH + dt.timedelta(days=int(record["as_of"]))
        return ListRefresh(
            list_name=str(record["list_name"]), source=str(record["source"]), as_of=as_of,
            synced_at_ms=int(record["synced_at"]), numbers=int(record["numbers"]),
            adds=int(record["adds"]), removes=int(record["removes"]),
            invalid=int(record.get("invalid", 0)), mode=str(record.get("mode", "UNKNOWN")),
        )
    except (KeyError, TypeError, OverflowError) as exc:
        raise ValueError(f"not a DncListRefresh record: {type(exc).__name__}") from None


@dataclass(frozen=True)
class ListFreshness:
    """One list's verdict.

    Attributes:
        list_name: the list.
        age_s: seconds since its registry access, or None without a readable record.
        limit_s: its limit in seconds, or None without one.
        stale: it has a limit and is at least that old, or has a limit and no record.
        enforced: its staleness stops submission.
        reason: what is wrong (``""`` when fresh).
    """

    list_name: str
    age_s: float | None
    limit_s: float | None
    stale: bool
    enforced: bool
    reason: str


@dataclass(frozen=True)
class FreshnessReport:
    """Every list's verdict, in list-name order."""

    lists: tuple[ListFreshness, ...]

    @property
    def blocking(self) -> tuple[ListFreshness, ...]:
        """The stale lists whose policy stops submission."""
        return tuple(f for f in self.lists if f.stale and f.enforced)

    @property
    def ok(self) -> bool:
        """No enforced list is stale: submission may go on."""
        return not self.blocking

    @property
    def reason(self) -> str:
        """``ok``, or every stale list's reason (enforced ones first)."""
        stale = sorted((f for f in self.lists if f.stale), key=lambda f: not f.enforced)
        if not stale:
            return "ok"
        return "; ".join(f.reason if f.enforced else f"{f.reason} (not enforced)" for f in stale)


def _days(seconds: float) -> str:
    return f"{seconds / DAY_S:.1f} days"


def _verdict(name: str, refresh: ListRefresh | None, policy: ListPolicy | None, now: float,
             unreadable: bool) -> ListFreshness:
    limit_days = policy.max_age_days if policy is not None else None
    limit_s = None if limit_days is None else limit_days * DAY_S
    enforced = limit_s is not None and policy is not None and policy.enforce
    if refresh is None:
        why = "an unreadable refresh record" if unreadable else "no refresh record"
        reason = "" if limit_s is None else (
            f"DNC list {name!r} has {why} (limit {limit_days} days): run 'cxone-connector dnc sync'")
        return ListFreshness(name, None, limit_s, limit_s is not None, enforced, reason)
    age = refresh.age_s(now)
    stale = limit_s is not None and age >= limit_s
    reason = (f"DNC list {name!r} is stale: registry copy of {refresh.as_of.isoformat()} is "
              f"{_days(age)} old (limit {limit_days} days)") if stale else ""
    return ListFreshness(name, age, limit_s, stale, enforced, reason)


def evaluate(records: Mapping[str, ListRefresh], policies: Mapping[str, ListPolicy], now: float,
             unreadable: Collection[str] = ()) -> FreshnessReport:
    """Judge every list that has a record or a policy.

    Args:
        records: the latest refresh record per list.
        policies: the configured lists.
        now: Unix seconds.
        unreadable: lists whose latest record could not be read (treated as no record).

    Returns:
        One verdict per list, in name order.
    """
    names = sorted(set(records) | set(policies) | set(unreadable))
    return FreshnessReport(tuple(
        _verdict(n, records.get(n), policies.get(n), now, n in unreadable) for n in names))
