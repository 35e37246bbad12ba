"""Per-record answers of the call-lists profile, as pure functions (no I/O).

CXone answers batch-shaped calls with a 200 that may carry failed records, so nothing here
trusts the status code:

- DNC-group records: ``POST /dnc-groups/{id}/records`` answers
  ``{resultSet: {errorCount, recordResults: [{success, error, formattedPhone, phoneNumber}]}}``
  and ``DELETE`` (expire) ``{errorCount, recordResults: [...]}``. Each number sent gets a
  :class:`DncRecordResult`; a number without a result, or whose result is not
  ``success: true``, has failed.
- List record counts (``GET /lists/call-lists/{listId}``), a group's records and the
  groups holding a number, and ``removeProspects``.

CXone's error texts may quote the number: every text kept here has phone numbers masked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from connector.cxone.exceptions import DncRecordsError, ProtocolError
from connector.ops.logs import mask_phone

PhoneFormat = Literal["digits", "e164"]
Operation = Literal["add", "expire"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_NON_DIGITS = re.compile(r"[^0-9]")


def _masked(text: str, number: str) -> str:
    """``text`` with ``number`` (in E.164 or digits) and any other phone-like run masked."""
    digits = number.lstrip("+")
    hidden = "*" * max(0, len(digits) - 2) + digits[-2:]
    return mask_phone(text.replace(number, hidden).replace(digits, hidden))


@dataclass(frozen=True, slots=True)
class DncRecordResult:
    """What CXone did with one number of a DNC-group call.

    Attributes:
        number: the E.164 number as the caller gave it.
        success: True only when CXone answered ``success: true`` for it.
        formatted_phone: CXone's ``formattedPhone`` (how it stored the number), when given.
        error: why it failed (CXone's text, phone numbers masked); None on success.
        retriable: whether sending it again may succeed (False for a number CXone or the
            client calls invalid).
    """

    number: str
    success: bool
    formatted_phone: str | None = None
    error: str | None = None
    retriable: bool = False


@dataclass(frozen=True, slots=True)
class DncRecordsResult:
    """The outcome of one DNC-group add or expire call, number by number.

    Attributes:
        operation: ``add`` or ``expire``.
        group_id: the DNC group.
        records: one result per distinct number, in the order given.
        error_count: CXone's ``errorCount`` (0 when no request was sent).
    """

    operation: Operation
    group_id: str
    records: tuple[DncRecordResult, ...]
    error_count: int = 0

    @property
    def succeeded(self) -> tuple[str, ...]:
        """The numbers CXone acknowledged, in the order given."""
        return tuple(r.number for r in self.records if r.success)

    @property
    def failed(self) -> tuple[DncRecordResult, ...]:
        """The records that failed (never count them as done)."""
        return tuple(r for r in self.records if not r.success)

    @property
    def ok(self) -> bool:
        """True when every number succeeded."""
        return all(r.success for r in self.records)

    def raise_for_failures(self) -> None:
        """Raise when any record failed.

        Raises:
            DncRecordsError: carrying this result; retriable when any failure is.
        """
        if not self.ok:
            raise DncRecordsError(self)


def dnc_phone(number: str, fmt: PhoneFormat) -> int | str:
    """The ``phoneNumber`` of a DNC-group record: digits as an integer (no ``+``), or E.164.

    Raises:
        ValueError: ``number`` is not E.164.
    """
    if not _E164.fullmatch(number):
        raise ValueError("not an E.164 number")
    return int(number[1:]) if fmt == "digits" else number


def dnc_records_body(
    numbers: Sequence[str], fmt: PhoneFormat
) -> tuple[dict[str, Any], list[str], list[DncRecordResult]]:
    """The request body for ``numbers`` (duplicates dropped).

    Returns:
        The body, the numbers it carries in order, and the failures of numbers that cannot
        be sent (not E.164; not retriable).
    """
    sent: list[str] = []
    local: list[DncRecordResult] = []
    records: list[dict[str, Any]] = []
    for number in dict.fromkeys(numbers):
        try:
            records.append({"phoneNumber": dnc_phone(number, fmt)})
        except ValueError:
            local.append(DncRecordResult(number, False, error="not an E.164 number; not sent"))
            continue
        sent.append(number)
    return {"dncGroupRecords": records}, sent, local


def _result_list(answer: Any, operation: Operation) -> tuple[list[Any], int]:
    outer = answer.get("resultSet", answer) if isinstance(answer, dict) else None
    results = outer.get("recordResults") if isinstance(outer, dict) else None
    if not isinstance(results, list):
        raise ProtocolError(f"DNC group {operation} answer carries no recordResults")
    count = outer.get("errorCount", 0) if isinstance(outer, dict) else 0
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ProtocolError(f"DNC group {operation} answer has a bad errorCount")
    return results, count


def _match(results: list[Any], sent: list[str]) -> dict[str, dict[str, Any]]:
    """Results keyed by the number sent: by ``phoneNumber`` when every result has one, else
    by position when the counts agree (the expire answer carries no ``phoneNumber``)."""
    usable = [r for r in results if isinstance(r, dict)]
    if usable and all(r.get("phoneNumber") not in (None, "") for r in usable):
        by_digits = {n.lstrip("+"): n for n in sent}
        out: dict[str, dict[str, Any]] = {}
        for r in usable:
            number = by_digits.get(_NON_DIGITS.sub("", str(r["phoneNumber"])))
            if number is not None:
                out.setdefault(number, r)
        return out
    if len(usable) == len(results) == len(sent):
        return dict(zip(sent, usable, strict=True))
    return {}


def _record(number: str, raw: dict[str, Any] | None) -> DncRecordResult:
    if raw is None:
        return DncRecordResult(number, False, error="CXone returned no result for this record", retriable=True)
    formatted = raw.get("formattedPhone")
    formatted = str(formatted) if isinstance(formatted, str | int) and not isinstance(formatted, bool) else None
    if raw.get("success") is True:
        return DncRecordResult(number, True, formatted)
    error = raw.get("error")
    text = _masked(str(error), number) if error else "CXone reported a failure without a reason"
    # CXone gives no error code: a number it calls invalid will not get better by itself
    return DncRecordResult(number, False, formatted, text, retriable="invalid" not in text.lower())


def parse_dnc_results(
    answer: Any, operation: Operation, group_id: str, sent: list[str], local: Sequence[DncRecordResult] = (),
) -> DncRecordsResult:
    """The per-record outcome of a DNC-group add or expire answer.

    A number without a result fails (retriable). When ``errorCount`` says more records
    failed than the results show, no success can be trusted: every number fails (retriable).

    Raises:
        ProtocolError: the answer has no ``recordResults`` array or a bad ``errorCount``.
    """
    results, error_count = _result_list(answer, operation)
    matched = _match(results, sent)
    records = [_record(n, matched.get(n)) for n in sent]
    reported = sum(1 for r in records if not r.success and matched.get(r.number) is not None)
    if error_count > reported:
        note = f"CXone counted {error_count} failed record(s) but did not say which"
        records = [r if not r.success else DncRecordResult(r.number, False, r.formatted_phone, note, True)
                   for r in records]
    return DncRecordsResult(operation, group_id, (*records, *local), error_count)


@dataclass(frozen=True, slots=True)
class DncRecord:
    """One record of a DNC group, as ``GET /dnc-groups/{id}/records`` lists it."""

    record_id: str
    phone_number: str
    formatted_phone: str | None
    expired_date: str | None
    date_collected: str | None


@dataclass(frozen=True, slots=True)
class DncRecordPage:
    """One page of a group's records, and the group's total when CXone says it."""

    records: tuple[DncRecord, ...]
    total: int | None


def _opt_str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None


def parse_dnc_page(answer: Any) -> DncRecordPage:
    """``{resultSet: {totalRecords, dncRecords: [...]}}`` as a :class:`DncRecordPage`.

    Raises:
        ProtocolError: no ``dncRecords`` array, or a record without a phone number.
    """
    outer = answer.get("resultSet", answer) if isinstance(answer, dict) else None
    rows = outer.get("dncRecords") if isinstance(outer, dict) else None
    if not isinstance(outer, dict) or not isinstance(rows, list):
        raise ProtocolError("DNC group records answer carries no dncRecords")
    records: list[DncRecord] = []
    for row in rows:
        phone = _opt_str(row.get("phoneNumber")) if isinstance(row, dict) else None
        if not isinstance(row, dict) or phone is None:
            raise ProtocolError("DNC group record without phoneNumber")
        records.append(DncRecord(_opt_str(row.get("recordId")) or "", phone, _opt_str(row.get("formattedPhone")),
                                 _opt_str(row.get("expiredDate")), _opt_str(row.get("dateCollected"))))
    total = outer.get("totalRecords")
    return DncRecordPage(tuple(records), total if isinstance(total, int) and not isinstance(total, bool) else None)


@dataclass(frozen=True, slots=True)
class DncGroupHit:
    """A DNC group that holds a searched number."""

    group_id: str
    formatted_phone: str | None
    expired_date: str | None


def parse_dnc_search(answer: Any) -> tuple[DncGroupHit, ...]:
    """``{searchResults: [{dncGroupId, formattedPhone, expiredDate, ...}]}`` as hits.

    Raises:
        ProtocolError: no ``searchResults`` array, or a result without ``dncGroupId``.
    """
    rows = answer.get("searchResults") if isinstance(answer, dict) else None
    if not isinstance(rows, list):
        raise ProtocolError("DNC search answer carries no searchResults")
    hits: list[DncGroupHit] = []
    for row in rows:
        group = _opt_str(row.get("dncGroupId")) if isinstance(row, dict) else None
        if not isinstance(row, dict) or group is None:
            raise ProtocolError("DNC search result without dncGroupId")
        hits.append(DncGroupHit(group, _opt_str(row.get("formattedPhone")), _opt_str(row.get("expiredDate"))))
    return tuple(hits)


@dataclass(frozen=True, slots=True)
class ListCounts:
    """A calling list's record counts (rows CXone rejected are ``invalid_records``)."""

    list_id: str
    total_records: int
    valid_records: int
    invalid_records: int


def parse_list_counts(answer: Any, list_id: str) -> ListCounts:
    """The counts of ``GET /lists/call-lists/{listId}`` (``{resultSet: {...}}`` or flat).

    Raises:
        ProtocolError: a count is missing or not a non-negative integer.
    """
    outer = answer.get("resultSet", answer) if isinstance(answer, dict) else None
    counts: list[int] = []
    for key in ("totalRecords", "validRecords", "invalidRecords"):
        value = outer.get(key) if isinstance(outer, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProtocolError(f"call list answer has no usable {key}")
        counts.append(value)
    return ListCounts(list_id, *counts)


@dataclass(frozen=True, slots=True)
class ProspectRemoval:
    """The outcome of ``removeProspects``, external id by external id.

    Attributes:
        removed: the external ids CXone removed, in the order given.
        failed: ``{externalId: resultCode}`` of those it did not remove (a missing answer
            is ``"NoResult"``).
    """

    removed: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every external id was removed."""
        return not self.failed


def parse_prospect_removal(answer: Any, external_ids: Sequence[str]) -> ProspectRemoval:
    """``{successfulRecords: [{externalId, resultCode}], failedRecords: [...]}`` for ``external_ids``.

    Raises:
        ProtocolError: neither array is present.
    """
    if not isinstance(answer, dict) or not any(isinstance(answer.get(k), list)
                                               for k in ("successfulRecords", "failedRecords")):
        raise ProtocolError("removeProspects answer carries neither successfulRecords nor failedRecords")

    def codes(key: str) -> dict[str, str]:
        rows = answer.get(key)
        if not isinstance(rows, list):
            return {}
        return {str(r["externalId"]): str(r.get("resultCode") or "")
                for r in rows if isinstance(r, dict) and _opt_str(r.get("externalId")) is not None}

    good, bad = codes("successfulRecords"), codes("failedRecords")
    wanted = list(dict.fromkeys(external_ids))
    removed = tuple(e for e in wanted if e in good and e not in bad)
    failed = {e: bad.get(e) or "NoResult" for e in wanted if e not in removed}
    return ProspectRemoval(removed, failed)
