"""Pure wire formats of both profiles."""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.models import ContactEvent, SourceRef
from connector.cxone.exceptions import ProtocolError
from connector.cxone.protocol import (
    ABORTED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    JobUpdate,
    call_list_csv,
    call_list_file_name,
    call_list_job_id,
    call_list_job_update,
    call_list_upload_bodies,
    chunked,
    v2_bulk_body,
    v2_item,
    v2_job_id,
    v2_job_update,
    v2_parse_event,
    v2_subscribe_frame,
)


def contact(i: int, **kw: object) -> ContactEvent:
    base: dict[str, object] = dict(
        source=SourceRef("t", 0, i), key=f"c{i}".encode(), raw=b"raw", headers=[], produced_at_ms=0,
        event_id=f"e{i}", contact_id=f"c{i}", phone_e164=f"+1415555{i:04d}", opted_in=True,
        first_name="Ann", last_name="Lee", email=f"a{i}@example.com", custom_fields={"tier": "gold"},
        changed_at_ms=1_705_276_800_000, source_system="crm",
    )
    base.update(kw)
    return ContactEvent.of(**base)  # type: ignore[arg-type]


def test_v2_item_maps_fields_and_passes_custom_fields() -> None:
    item = v2_item(contact(1))
    assert item == {
        "phoneNumber": "+14155550001", "firstName": "Ann", "lastName": "Lee", "email": "a1@example.com",
        "customFields": {"tier": "gold", "source": "crm", "optInDate": "2024-01-15T00:00:00Z"},
    }


def test_v2_item_omits_missing_names_and_keeps_crm_source_field() -> None:
    item = v2_item(contact(2, first_name=None, email=None, custom_fields={"source": "import"}))
    assert "firstName" not in item and "email" not in item
    assert item["customFields"]["source"] == "import"


def test_v2_bulk_body_limit() -> None:
    body = v2_bulk_body("list-1", [contact(1), contact(2)])
    assert body["contactListId"] == "list-1" and len(body["items"]) == 2
    with pytest.raises(ValueError):
        v2_bulk_body("list-1", [contact(1)] * 10_001)


def test_v2_job_answers() -> None:
    assert v2_job_id({"id": "job-1"}) == "job-1"
    with pytest.raises(ProtocolError):
        v2_job_id({"jobId": "x"})
    update = v2_job_update({"id": "job-1", "status": "in_progress", "progress": 42.7})
    assert update == JobUpdate("job-1", IN_PROGRESS, 42, "poll")
    failed = v2_job_update({"id": "j", "status": "FAILED", "error": "bad list"})
    assert failed.terminal and failed.status == FAILED and "bad list" in failed.detail
    with pytest.raises(ProtocolError):
        v2_job_update({"id": "j", "status": "WHATEVER"})


def test_v2_frames() -> None:
    frame = json.loads(v2_subscribe_frame(["a", "b"]))
    assert frame == {"eventTypes": ["outbound.contactlistitems.bulkinsert"],
                     "filters": {"jobIds": ["a", "b"]}}
    event = json.dumps({"eventType": "outbound.contactlistitems.bulkinsert", "timestamp": "t",
                        "data": {"jobId": "a", "status": "COMPLETED", "progress": 100}})
    assert v2_parse_event(event) == JobUpdate("a", COMPLETED, 100, "event")
    assert v2_parse_event(json.dumps({"eventType": "heartbeat"})) is None
    with pytest.raises(ProtocolError):
        v2_parse_event("{not json")
    with pytest.raises(ProtocolError):
        v2_parse_event(json.dumps({"eventType": "outbound.contactlistitems.bulkinsert", "data": {}}))


@given(st.binary(max_size=200))
def test_v2_parse_event_only_raises_protocol_error(frame: bytes) -> None:
    try:
        result = v2_parse_event(frame)
    except ProtocolError:
        return
    assert result is None or isinstance(result, JobUpdate)


def test_call_list_csv_roundtrip_with_awkward_values() -> None:
    people = [contact(1, first_name='O"Neil, Jr', last_name=None), contact(2)]
    rows = list(csv.reader(io.StringIO(call_list_csv(people))))
    assert rows[0] == ["externalId", "phone", "firstName", "lastName", "email"]
    assert rows[1] == ["c1", "+14155550001", 'O"Neil, Jr', "", "a1@example.com"]
    assert rows[2][0] == "c2"


def test_call_list_upload_bodies_chunk_and_name_files() -> None:
    people = [contact(i) for i in range(5)]
    bodies = call_list_upload_bodies(people, "k" * 64, max_records=2, skill_id=7)
    assert [b["fileName"] for b in bodies] == [call_list_file_name("k" * 64, i, 3) for i in range(3)]
    assert all(b["skillId"] == 7 for b in bodies)
    decoded = [base64.b64decode(b["listFile"]).decode() for b in bodies]
    assert [len(d.strip().splitlines()) - 1 for d in decoded] == [2, 2, 1]
    again = call_list_upload_bodies(people, "k" * 64, max_records=2, skill_id=7)
    assert again == bodies  # same key, same files: the sink can dedupe a replay


def test_call_list_job_status_mapping() -> None:
    def body(**job: object) -> dict[str, object]:
        return {"uploadJobs": [{"jobId": "other", "isComplete": True}, {"jobId": "j1", **job}]}

    assert call_list_job_update(body(isComplete=False, isCancelled=False), "j1").status == IN_PROGRESS
    assert call_list_job_update(body(isComplete=True, isCancelled=False), "j1").status == COMPLETED
    assert call_list_job_update(body(isComplete=True, isCancelled=True), "j1").status == ABORTED
    assert call_list_job_update(body(isComplete=True, errorMessage="quota"), "j1").status == FAILED
    failed = call_list_job_update(body(isComplete=True, status="FAILED", failureReason="boom"), "j1")
    assert failed.status == FAILED and "boom" in failed.detail
    assert call_list_job_update(body(isComplete=False, status="QUEUED"), "j1").status == "QUEUED"
    with pytest.raises(ProtocolError):
        call_list_job_update({"uploadJobs": []}, "j1")
    assert call_list_job_id({"jobId": 12}) == "12"
    with pytest.raises(ProtocolError):
        call_list_job_id({})


@given(st.lists(st.integers(), max_size=50), st.integers(1, 12))
def test_chunked_preserves_order_and_bounds(items: list[int], size: int) -> None:
    chunks = list(chunked(items, size))
    assert [x for c in chunks for x in c] == items
    assert all(1 <= len(c) <= size for c in chunks)


class TzContact(ContactEvent):
    """A contact carrying a time zone, as the pipeline will add it."""

    __slots__ = ("time_zone",)


def tz_contact(i: int, zone: str | None, custom: dict[str, str] | None = None) -> ContactEvent:
    c = TzContact.of(SourceRef("t", 0, i), None, b"", [], 0, f"e{i}", f"c{i}", f"+1415555{i:04d}", True,
                     None, None, None, custom or {}, 1_700_000_000_000, "crm")
    c.time_zone = zone
    return c


def test_v2_item_adds_time_zone_only_when_the_contact_has_one() -> None:
    assert "timeZone" not in v2_item(contact(1))["customFields"]  # no attribute at all
    assert "timeZone" not in v2_item(tz_contact(2, None))["customFields"]
    assert v2_item(tz_contact(3, "America/Chicago"))["customFields"]["timeZone"] == "America/Chicago"
    crm_says = tz_contact(4, "America/Chicago", {"timeZone": "CRM"})
    assert v2_item(crm_says)["customFields"]["timeZone"] == "CRM"  # the CRM's own field wins


def test_call_list_csv_time_zone_column_and_default() -> None:
    people = [tz_contact(1, "America/Chicago"), tz_contact(2, None), contact(3)]
    rows = list(csv.reader(io.StringIO(call_list_csv(people, time_zone_column="tz"))))
    assert rows[0] == ["externalId", "phone", "firstName", "lastName", "email", "tz"]
    assert [r[-1] for r in rows[1:]] == ["America/Chicago", "", ""]
    assert len(next(csv.reader(io.StringIO(call_list_csv(people))))) == 5  # no column asked for
    [body] = call_list_upload_bodies(people, "k", time_zone_column="tz", default_time_zone="America/Denver")
    assert body["defaultTimeZone"] == "America/Denver"
    assert base64.b64decode(body["listFile"]).decode().splitlines()[0].endswith(",tz")
    [plain] = call_list_upload_bodies(people, "k")
    assert "defaultTimeZone" not in plain
