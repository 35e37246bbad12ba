"""Wire formats of both CXone profiles, as pure functions (no I/O).

v2 (tutorial): JSON bulk-insert items, job-status bodies, WebSocket subscribe and event
frames. call-lists (published API): the upload CSV, its base64 body, file names derived
from the idempotency key, chunking to the 500,000-record limit, and the upload-job status.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from connector.core.models import ContactEvent
from connector.cxone.exceptions import ProtocolError

#: Statuses a job update may carry. UNKNOWN is ours: a job that outlived its deadline silently.
QUEUED, IN_PROGRESS, COMPLETED, FAILED, ABORTED, UNKNOWN = (
    "QUEUED", "IN_PROGRESS", "COMPLETED", "FAILED", "ABORTED", "UNKNOWN",
)
TERMINAL = frozenset({COMPLETED, FAILED, ABORTED, UNKNOWN})
KNOWN_STATUSES = frozenset({QUEUED, IN_PROGRESS}) | TERMINAL

V2_EVENT_TYPE = "outbound.contactlistitems.bulkinsert"
V2_MAX_ITEMS = 10_000
#: The v2 custom field that carries a contact's time zone (added only when it has one).
V2_TIME_ZONE_FIELD = "timeZone"
CALL_LISTS_MAX_RECORDS = 500_000
CSV_COLUMNS = ("externalId", "phone", "firstName", "lastName", "email")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """What we learnt about one job, from an event or a poll.

    Attributes:
        job_id: the CXone job id.
        status: one of :data:`KNOWN_STATUSES`.
        progress: percent done when the API says so, else None.
        detail: free text for the job event (error message, source of the news).
    """

    job_id: str
    status: str
    progress: int | None = None
    detail: str = ""

    @property
    def terminal(self) -> bool:
        """True when the job will not change any more."""
        return self.status in TERMINAL


def iso_utc(epoch_ms: int) -> str:
    """``2024-01-15T00:00:00Z`` from epoch milliseconds."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (none for an empty sequence).

    Raises:
        ValueError: ``size`` is below 1.
    """
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------- v2 ---------------------

def time_zone_of(contact: ContactEvent) -> str | None:
    """The contact's time zone for calling hours, when it carries one (``time_zone``)."""
    zone = getattr(contact, "time_zone", None)
    return zone if isinstance(zone, str) and zone else None


def v2_item(contact: ContactEvent) -> dict[str, Any]:
    """One bulk-insert item. CRM custom fields pass through; ``source`` and ``optInDate``
    are added unless the CRM already sent fields of those names, and ``timeZone`` likewise,
    only when the contact carries a time zone."""
    custom: dict[str, str] = contact.custom_fields  # a copy already
    custom.setdefault("source", contact.source_system)
    custom.setdefault("optInDate", iso_utc(contact.changed_at_ms))
    zone = time_zone_of(contact)
    if zone is not None:
        custom.setdefault(V2_TIME_ZONE_FIELD, zone)
    item: dict[str, Any] = {"phoneNumber": contact.phone_e164}
    if contact.first_name is not None:
        item["firstName"] = contact.first_name
    if contact.last_name is not None:
        item["lastName"] = contact.last_name
    if contact.email is not None:
        item["email"] = contact.email
    item["customFields"] = custom
    return item


def v2_bulk_body(contact_list_id: str, contacts: Sequence[ContactEvent]) -> dict[str, Any]:
    """The bulk-insert request body.

    Raises:
        ValueError: more than :data:`V2_MAX_ITEMS` contacts (the window should never build one).
    """
    if len(contacts) > V2_MAX_ITEMS:
        raise ValueError(f"v2 bulk insert takes at most {V2_MAX_ITEMS} items, got {len(contacts)}")
    return {"contactListId": contact_list_id, "items": [v2_item(c) for c in contacts]}


def _progress(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0, min(100, int(value)))


def _status(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in KNOWN_STATUSES - {UNKNOWN}:
        raise ProtocolError(f"unknown job status {value!r}")
    return value.upper()


def v2_job_id(body: Any) -> str:
    """The job id from a ``202 {"id": ...}`` answer.

    Raises:
        ProtocolError: no usable id.
    """
    if isinstance(body, dict) and isinstance(body.get("id"), str | int) and str(body["id"]):
        return str(body["id"])
    raise ProtocolError("bulk insert answer carries no job id")


def v2_job_update(body: Any, *, detail: str = "poll") -> JobUpdate:
    """A job-status body ``{"id","status","progress",...}`` as a :class:`JobUpdate`.

    Raises:
        ProtocolError: the body lacks an id or a known status.
    """
    if not isinstance(body, dict) or not isinstance(body.get("id"), str | int):
        raise ProtocolError("job status answer carries no id")
    message = body.get("failureReason") or body.get("error") or body.get("message")
    return JobUpdate(
        str(body["id"]), _status(body.get("status")), _progress(body.get("progress")),
        f"{detail}: {message}" if isinstance(message, str) and message else detail,
    )


def v2_subscribe_frame(job_ids: Sequence[str]) -> str:
    """The WebSocket subscription frame for ``job_ids``."""
    return json.dumps({"eventTypes": [V2_EVENT_TYPE], "filters": {"jobIds": list(job_ids)}})


def v2_parse_event(frame: str | bytes) -> JobUpdate | None:
    """A job update from an event frame, or None for a frame about something else.

    Raises:
        ProtocolError: the frame is not JSON, or a bulk-insert event without job id or status.
    """
    try:
        event = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("event frame is not JSON") from None
    if not isinstance(event, dict) or event.get("eventType") != V2_EVENT_TYPE:
        return None
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("jobId"), str | int):
        raise ProtocolError("bulk insert event without data.jobId")
    message = data.get("failureReason") or data.get("error") or data.get("message")
    return JobUpdate(
        str(data["jobId"]), _status(data.get("status")), _progress(data.get("progress")),
        f"event: {message}" if isinstance(message, str) and message else "event",
    )


# ------------------------------------------------------------ call-lists -----------------

def call_list_csv(contacts: Sequence[ContactEvent], *, time_zone_column: str = "") -> str:
    """The upload CSV: a header row, then one row per contact (external id = CRM contact id).

    Args:
        time_zone_column: when set, a last column of that name holds each contact's time
            zone (empty when it has none: CXone then applies the upload's ``defaultTimeZone``).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow((*CSV_COLUMNS, time_zone_column) if time_zone_column else CSV_COLUMNS)
    for c in contacts:
        row = [c.contact_id, c.phone_e164, c.first_name or "", c.last_name or "", c.email or ""]
        if time_zone_column:
            row.append(time_zone_of(c) or "")
        writer.writerow(row)
    return out.getvalue()


def call_list_file_name(idempotency_key: str, index: int, total: int) -> str:
    """A file name CXone dedupes on: stable for the same batch attempt and chunk."""
    return f"cxone-connector-{idempotency_key[:40]}-{index + 1}of{total}.csv"


def call_list_upload_body(
    contacts: Sequence[ContactEvent], file_name: str, *, skill_id: int = 0, time_zone_column: str = "",
    default_time_zone: str = "",
) -> dict[str, Any]:
    """The upload body of one CSV file.

    Args:
        time_zone_column: see :func:`call_list_csv`.
        default_time_zone: the body's ``defaultTimeZone`` (left out when empty).
    """
    csv_text = call_list_csv(contacts, time_zone_column=time_zone_column)
    body: dict[str, Any] = {
        "listFile": base64.b64encode(csv_text.encode("utf-8")).decode("ascii"),
        "fileName": file_name,
        "forceOverwrite": False,
        "startSkill": False,
        "sendEmail": False,
    }
    if skill_id:
        body["skillId"] = skill_id
    if default_time_zone:
        body["defaultTimeZone"] = default_time_zone
    return body


def call_list_upload_bodies(
    contacts: Sequence[ContactEvent], idempotency_key: str, *, skill_id: int = 0,
    max_records: int = CALL_LISTS_MAX_RECORDS, time_zone_column: str = "", default_time_zone: str = "",
) -> list[dict[str, Any]]:
    """One upload body (:func:`call_list_upload_body`) per chunk of at most ``max_records``."""
    chunks = list(chunked(contacts, max_records))
    return [call_list_upload_body(chunk, call_list_file_name(idempotency_key, index, len(chunks)),
                                  skill_id=skill_id, time_zone_column=time_zone_column,
                                  default_time_zone=default_time_zone)
            for index, chunk in enumerate(chunks)]


def call_list_job_id(body: Any) -> str:
    """The job id from an upload answer ``{"jobId": ...}``.

    Raises:
        ProtocolError: no usable job id.
    """
    if isinstance(body, dict) and isinstance(body.get("jobId"), str | int) and str(body["jobId"]):
        return str(body["jobId"])
    raise ProtocolError("upload answer carries no jobId")


def call_list_job_update(body: Any, job_id: str) -> JobUpdate:
    """An upload-job status ``{"uploadJobs":[{jobId,isComplete,isCancelled,...}]}`` as an update.

    There is no status enum: cancelled is ABORTED, complete is COMPLETED (FAILED when the
    job reports an error), anything else IN_PROGRESS.

    Raises:
        ProtocolError: the body does not list ``job_id``.
    """
    jobs = body.get("uploadJobs") if isinstance(body, dict) else None
    if not isinstance(jobs, list):
        raise ProtocolError("upload job answer without uploadJobs")
    for job in jobs:
        if isinstance(job, dict) and str(job.get("jobId")) == job_id:
            break
    else:
        raise ProtocolError(f"upload job answer does not list job {job_id}")
    error = job.get("failureReason") or job.get("errorMessage") or job.get("error")
    reason = f"poll: {error}" if isinstance(error, str) and error else "poll"
    status = job.get("status")  # an extension some servers add; trusted when it is one we know
    if isinstance(status, str) and status.upper() in KNOWN_STATUSES - {UNKNOWN}:
        return JobUpdate(job_id, status.upper(), 100 if status.upper() == COMPLETED else None, reason)
    if job.get("isCancelled"):
        return JobUpdate(job_id, ABORTED, None, "poll: cancelled")
    if job.get("isFailed") or (job.get("isComplete") and isinstance(error, str) and error):
        return JobUpdate(job_id, FAILED, None, reason)
    if job.get("isComplete"):
        return JobUpdate(job_id, COMPLETED, 100, "poll")
    return JobUpdate(job_id, IN_PROGRESS, None, "poll")
