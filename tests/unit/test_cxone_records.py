"""Per-record answers of the call-lists profile: DNC-group results (matching, failures, masking,
counts that disagree), listings, search, list counts and removeProspects."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.cxone.exceptions import DncRecordsError, ProtocolError
from connector.cxone.records import (
    dnc_phone,
    dnc_records_body,
    parse_dnc_page,
    parse_dnc_results,
    parse_dnc_search,
    parse_list_counts,
    parse_prospect_removal,
)

SENT = ["+14155550101", "+14155550102"]


def ok(phone: object | None = None, formatted: str = "14155550101") -> dict[str, Any]:
    out: dict[str, Any] = {"success": True, "error": None, "formattedPhone": formatted}
    if phone is not None:
        out["phoneNumber"] = phone
    return out


def test_body_sends_digits_as_integers_or_e164_and_refuses_the_rest() -> None:
    body, sent, local = dnc_records_body(["+14155550101", "+14155550101", "4155550102", "+1 415"], "digits")
    assert body == {"dncGroupRecords": [{"phoneNumber": 14155550101}]}
    assert sent == ["+14155550101"]
    assert [(r.number, r.success, r.retriable) for r in local] == [("4155550102", False, False),
                                                                   ("+1 415", False, False)]
    body, _, _ = dnc_records_body(["+14155550101"], "e164")
    assert body == {"dncGroupRecords": [{"phoneNumber": "+14155550101"}]}
    with pytest.raises(ValueError):
        dnc_phone("+0123", "digits")


def test_results_are_matched_by_phone_number_whatever_the_order() -> None:
    answer = {"resultSet": {"errorCount": 1, "recordResults": [
        {"success": False, "error": "Invalid phone number 14155550102", "formattedPhone": None,
         "phoneNumber": 14155550102},
        ok(14155550101)]}}
    result = parse_dnc_results(answer, "add", "g", SENT)
    assert result.succeeded == ("+14155550101",)
    [failed] = result.failed
    assert failed.number == "+14155550102" and not failed.retriable  # CXone calls it invalid
    assert failed.error is not None and "4155550102" not in failed.error and failed.error.endswith("02")
    assert result.records[0].formatted_phone == "14155550101"
    with pytest.raises(DncRecordsError) as info:
        result.raise_for_failures()
    assert not info.value.retriable and "1 of 2" in str(info.value) and "555" not in str(info.value)


def test_results_without_phone_numbers_are_matched_by_position() -> None:
    answer = {"errorCount": 1, "recordResults": [ok(), {"success": False, "error": "busy", "formattedPhone": "x"}]}
    result = parse_dnc_results(answer, "expire", "g", SENT)
    assert result.succeeded == ("+14155550101",)
    assert result.failed[0].number == "+14155550102" and result.failed[0].retriable


@pytest.mark.parametrize("answer", [
    {"recordResults": [ok()]},  # one result for two numbers, none named: nothing can be matched
    {"resultSet": {"errorCount": 0, "recordResults": [ok(14155550101)]}},  # the second has none
])
def test_a_number_without_a_result_has_failed(answer: dict[str, Any]) -> None:
    result = parse_dnc_results(answer, "add", "g", SENT)
    assert "+14155550102" in [r.number for r in result.failed]
    assert all(r.retriable for r in result.failed)


def test_success_must_be_true_and_an_error_count_beyond_the_results_trusts_nothing() -> None:
    answer = {"resultSet": {"errorCount": 0, "recordResults": [
        {"phoneNumber": "14155550101", "success": "true"}, ok("+1 415 555 0102")]}}
    result = parse_dnc_results(answer, "add", "g", SENT)
    assert result.succeeded == ("+14155550102",)
    assert result.failed[0].error == "CXone reported a failure without a reason"
    vague = {"resultSet": {"errorCount": 1, "recordResults": [ok(14155550101), ok(14155550102)]}}
    assert parse_dnc_results(vague, "add", "g", SENT).succeeded == ()


@pytest.mark.parametrize("answer", [None, [], {"resultSet": {}}, {"recordResults": {}},
                                    {"errorCount": -1, "recordResults": []},
                                    {"errorCount": True, "recordResults": []}])
def test_malformed_answers_are_protocol_errors(answer: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_dnc_results(answer, "add", "g", SENT)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4), max_leaves=20))
def test_any_answer_gives_a_result_per_number_or_a_protocol_error(answer: Any) -> None:
    try:
        result = parse_dnc_results({"recordResults": [answer, answer]}, "add", "g", SENT)
    except ProtocolError:
        return
    assert [r.number for r in result.records] == SENT
    assert all(r.success == (r.error is None) for r in result.records)


def test_page_and_search() -> None:
    page = parse_dnc_page({"resultSet": {"totalRecords": 3, "dncRecords": [
        {"recordId": 7, "phoneNumber": 14155550101, "formattedPhone": "(415) 555-0101",
         "expiredDate": None, "dateCollected": "2026-01-01T00:00:00Z"}]}})
    assert page.total == 3 and page.records[0].record_id == "7" and page.records[0].phone_number == "14155550101"
    with pytest.raises(ProtocolError):
        parse_dnc_page({"resultSet": {"dncRecords": [{"recordId": 1}]}})
    hits = parse_dnc_search({"searchResults": [{"dncGroupId": 12, "formattedPhone": "14155550101",
                                                "expiredDate": "2030-01-01"}]})
    assert [(h.group_id, h.expired_date) for h in hits] == [("12", "2030-01-01")]
    with pytest.raises(ProtocolError):
        parse_dnc_search({"dncGroupRecords": []})


def test_list_counts_from_the_result_set_or_flat() -> None:
    counts = parse_list_counts({"resultSet": {"totalRecords": 10, "validRecords": 7, "invalidRecords": 3}}, "5")
    assert (counts.list_id, counts.total_records, counts.valid_records, counts.invalid_records) == ("5", 10, 7, 3)
    assert parse_list_counts({"totalRecords": 1, "validRecords": 1, "invalidRecords": 0}, "5").valid_records == 1
    for bad in ({"resultSet": {"totalRecords": 1, "validRecords": 1}},
                {"totalRecords": 1, "validRecords": True, "invalidRecords": 0}, []):
        with pytest.raises(ProtocolError):
            parse_list_counts(bad, "5")


def test_prospect_removal_fails_closed() -> None:
    answer = {"successfulRecords": [{"externalId": "a", "resultCode": "Removed"}, {"externalId": 3}],
              "failedRecords": [{"externalId": "b", "resultCode": "Locked"}]}
    removal = parse_prospect_removal(answer, ["a", "b", "3", "c"])
    assert removal.removed == ("a", "3") and removal.failed == {"b": "Locked", "c": "NoResult"}
    assert not removal.ok and parse_prospect_removal({"successfulRecords": []}, []).ok
    with pytest.raises(ProtocolError):
        parse_prospect_removal({}, ["a"])
