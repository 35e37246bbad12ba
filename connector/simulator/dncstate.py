"""DNC groups of the simulated tenant, free of I/O: records keyed by canonical number (digits).

A group exists once a record was added to it. Each record has a ``recordId`` (unique in
the tenant), the ``expiredDate`` it was given (None: never) and the time it was collected.
Expiring a record (``DELETE .../records``) removes it: it no longer blocks its number.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class DncRecord:
    """One number in one DNC group."""

    record_id: int
    phone: str
    expired_date: str | None
    date_collected: float


class DncStore:
    """Every DNC group and its records."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, DncRecord]] = {}
        self._ids = itertools.count(1)

    def new_records(self, group_id: str, phones: Iterable[str]) -> int:
        """How many of ``phones`` are not in the group yet."""
        group = self.groups.get(group_id, {})
        return len(set(phones) - group.keys())

    def add(self, group_id: str, records: Mapping[str, str | None], now: float) -> int:
        """Add (or refresh the ``expiredDate`` of) ``phone -> expiredDate``; returns how many are new."""
        group = self.groups.setdefault(group_id, {})
        added = 0
        for phone, expired in records.items():
            known = group.get(phone)
            if known is None:
                group[phone] = DncRecord(next(self._ids), phone, expired, now)
                added += 1
            else:
                known.expired_date = expired
        return added

    def expire(self, group_id: str, phones: Iterable[str]) -> int:
        """Remove the records of ``phones``; returns how many were present."""
        group = self.groups.get(group_id, {})
        return sum(1 for phone in phones if group.pop(phone, None) is not None)

    def count(self) -> int:
        """Records in every group (they count toward the tenant's limit)."""
        return sum(len(g) for g in self.groups.values())

    def blocked(self) -> set[str]:
        """Every number some group holds."""
        return {phone for group in self.groups.values() for phone in group}

    def page(self, group_id: str, top: int, skip: int) -> tuple[list[DncRecord], int]:
        """Records ``skip`` to ``skip + top`` of the group (in the order added) and the total."""
        records = list(self.groups.get(group_id, {}).values())
        return records[skip: skip + top], len(records)

    def holding(self, phone: str) -> list[tuple[str, DncRecord]]:
        """``(groupId, record)`` of every group that holds ``phone``."""
        return [(g, recs[phone]) for g, recs in self.groups.items() if phone in recs]

    def view(self) -> dict[str, list[dict[str, Any]]]:
        """``{groupId: [{phoneNumber, expiredDate, recordId}]}`` for the inspection API."""
        return {g: [{"phoneNumber": r.phone, "expiredDate": r.expired_date, "recordId": r.record_id}
                    for r in recs.values()] for g, recs in self.groups.items()}
