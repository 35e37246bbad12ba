"""Profile ``call-lists`` list handlers: call-list mappings (with their column mappings),
record counts, uploads (with time zones, and rejected rows when ``faults.uploads`` says so),
upload jobs and ``removeProspects``. Identity is in :mod:`~connector.simulator.identity`,
DNC groups in :mod:`~connector.simulator.dncgroups`.

Admin routes live under ``/inContactAPI/services/v{N}.0/``; any ``vNN.0`` is accepted.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connector.simulator.csvfile import Record, decode_file, parse_records
from connector.simulator.exceptions import ApiError, bad_request
from connector.simulator.faults import FaultInjector
from connector.simulator.httputil import bearer, ctx_of, json_response, read_json
from connector.simulator.state import ContactList, Job, iso

API = r"/inContactAPI/services/{version:v[0-9]+\.0}"
#: Upload body fields and the JSON types each accepts.
UPLOAD_FIELDS: dict[str, tuple[type, ...]] = {
    "listFile": (str,), "fileName": (str,), "skillId": (int, str), "defaultTimeZone": (str,),
    "forceOverwrite": (bool,), "expirationDate": (str,), "startSkill": (bool,), "sendEmail": (bool,),
}
#: The column-mapping query parameters of ``POST /lists/call-lists`` that the simulator keeps
#: (the published ones); any other parameter is ignored, as CXone would.
COLUMN_PARAMS = (
    "firstNameColumn", "lastNameColumn", "addressColumn", "cityColumn", "stateColumn", "zipColumn",
    "timeZoneColumn", "expirationDateColumn", "complianceReqColumn", "callerIdColumn", "priorityColumn",
    "scoreColumn", "customer1Column", "customer2Column", "confirmReqColumn", "overrideFinalizationColumn",
    "agentIdColumn", "callRequestTimeColumn", "callRequestStaleColumn", "notesColumn",
)
REJECT_REASON = "rejected by CXone (simulated: faults.uploads.reject_fraction)"


def _authenticate(request: web.Request) -> None:
    ctx_of(request).state.authenticate(bearer(request), "call-lists")


def _call_list(request: web.Request) -> ContactList:
    list_id = request.match_info["listId"]
    lst = ctx_of(request).state.lists.get(list_id)
    if lst is None or lst.profile != "call-lists":
        raise ApiError(404, "list_not_found", f"no call list {list_id}")
    return lst


def _list_view(lst: ContactList) -> dict[str, Any]:
    return {"listId": int(lst.list_id), "listName": lst.name, "externalIdColumn": lst.external_id_column,
            "phoneColumn": lst.phone_column, "destinationMappings": lst.mappings,
            "columnMappings": lst.column_mappings, "recordCount": len(lst.contacts), **lst.counts()}


def _is_mapping(m: object) -> bool:
    return isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("fieldName", "fieldValue"))


async def create_list(request: web.Request) -> web.Response:
    """``POST .../lists/call-lists?listName=&externalIdColumn=[&timeZoneColumn=...]`` with
    ``destinationMappings``. The :data:`COLUMN_PARAMS` given are kept; others are ignored.

    Returns ``{"listId"}``; a known ``listName`` returns its existing list (unchanged).

    Raises:
        ApiError: 401 (token), 400 (missing parameters, bad mappings, no phone mapping).
    """
    _authenticate(request)
    name = request.query.get("listName", "").strip()
    ext_col = request.query.get("externalIdColumn", "").strip()
    if not name:
        raise bad_request("invalid_request", "the listName query parameter is required", field="listName")
    if not ext_col:
        raise bad_request("invalid_request", "the externalIdColumn query parameter is required",
                          field="externalIdColumn")
    body = await read_json(request)
    mappings = body.get("destinationMappings") if isinstance(body, dict) else None
    if not isinstance(mappings, list) or not mappings or not all(_is_mapping(m) for m in mappings):
        raise bad_request("invalid_body", "destinationMappings must be a non-empty array of "
                          "{fieldName, fieldValue} strings", field="destinationMappings")
    phones = [m["fieldValue"] for m in mappings if m["fieldName"].lower().startswith("phonenumber")]
    if not phones:
        raise bad_request("invalid_body", "destinationMappings needs a PhoneNumber mapping",
                          field="destinationMappings")
    clean = [{"fieldName": m["fieldName"], "fieldValue": m["fieldValue"]} for m in mappings]
    columns = {p: request.query[p].strip() for p in COLUMN_PARAMS if request.query.get(p, "").strip()}
    lst, _created = ctx_of(request).state.create_call_list(name, ext_col, phones[0], clean, columns)
    return json_response({"listId": int(lst.list_id)})


async def get_list(request: web.Request) -> web.Response:
    """``GET .../lists/call-lists/{listId}``: ``{resultSet: {listName, status, totalRecords,
    validRecords, invalidRecords, ...}}``; counts as of the last completed job.

    Raises:
        ApiError: 401 (token), 404 (list).
    """
    _authenticate(request)
    lst = _call_list(request)
    return json_response({"resultSet": {"listId": int(lst.list_id), "listName": lst.name, "status": "Active",
                                        **lst.counts(), "finalizedRecords": 0,
                                        "createDate": iso(lst.created_at)}})


async def list_lists(request: web.Request) -> web.Response:
    """``GET .../lists/call-lists``: every call list."""
    _authenticate(request)
    lists = [lst for lst in ctx_of(request).state.lists.values() if lst.profile == "call-lists"]
    return json_response({"callingLists": [_list_view(lst) for lst in lists]})


def _check_upload_fields(body: dict[str, Any]) -> None:
    for key, value in body.items():
        types = UPLOAD_FIELDS.get(key)
        if types is None:
            raise bad_request("invalid_body", f"unknown field {key!r}", field=key)
        wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if value is not None and wrong:
            expected = " or ".join({bool: "a boolean", int: "an integer", str: "a string"}[t] for t in types)
            raise bad_request("invalid_body", f"{key} must be {expected}", field=key)


async def upload(request: web.Request) -> web.Response:
    """``POST .../lists/call-lists/{listId}/upload``: queue an upload job; ``{"jobId"}``.

    A ``fileName`` already uploaded to this list returns the original job (a replay).

    Raises:
        ApiError: 401 (token), 404 (list), 400 (body, base64, UTF-8, CSV, 500,000-record
            limit, 256 MB limit, record length, tenant limit), 413 (body size).
    """
    ctx = ctx_of(request)
    _authenticate(request)
    lst = _call_list(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("invalid_body", "the body must be a JSON object")
    _check_upload_fields(body)
    if "listFile" not in body:
        raise bad_request("invalid_body", "listFile is required", field="listFile")
    file_name = body.get("fileName") or None
    key = f"{lst.list_id}/{file_name}" if file_name else None
    if key is not None:
        original = ctx.state.find_replay("call-lists", key, "")
        if original is not None:
            return json_response({"jobId": original.job_id}, headers={"Idempotent-Replayed": "true"})
    cfg = ctx.config.call_lists
    text = decode_file(body["listFile"], cfg.max_file_bytes)
    records = parse_records(text, lst.external_id_column, lst.phone_column, cfg.max_records,
                            cfg.max_record_chars)
    items = upload_items(records, lst, body.get("defaultTimeZone") or None, ctx.faults)
    job = ctx.state.create_job("call-lists", lst.list_id, items, ctx.faults.job_outcome(),
                               idempotency_key=key, file_name=file_name,
                               force_overwrite=bool(body.get("forceOverwrite")))
    return json_response({"jobId": job.job_id})


def upload_items(records: list[Record], lst: ContactList, default_zone: str | None,
                 faults: FaultInjector) -> list[dict[str, Any]]:
    """The job items of an upload: each record with its time zone (its ``timeZoneColumn``
    value, else the upload's ``defaultTimeZone``) and, for the rows ``faults.uploads``
    rejects, ``valid: False``."""
    zone_column = lst.column_mappings.get("timeZoneColumn")
    rejected = faults.rejected_rows(len(records))
    items: list[dict[str, Any]] = []
    for index, r in enumerate(records):
        zone = (r.fields.get(zone_column) or "").strip() if zone_column else ""
        item: dict[str, Any] = {"phoneNumber": r.phone, "externalId": r.external_id, "fields": r.fields,
                                "timeZone": zone or default_zone}
        if index in rejected:
            item.update(valid=False, rejectReason=REJECT_REASON)
        items.append(item)
    return items


def upload_job_view(job: Job) -> dict[str, Any]:
    """A job as ``uploadJobs[]`` shows it (``status`` and counts are simulator extensions)."""
    return {
        "jobId": job.job_id, "listId": int(job.list_id), "fileName": job.file_name,
        "submitDate": iso(job.created_at), "startDate": iso(job.started_at),
        "completedDate": iso(job.completed_at), "isComplete": job.terminal,
        "isCancelled": job.status == "ABORTED",
        "status": job.status, "totalRecords": job.item_count, "processedRecords": int(job.processed),
        "failureReason": job.failure_reason,
    }


def _upload_job(request: web.Request) -> Job:
    job_id = request.match_info["jobId"]
    job = ctx_of(request).state.jobs.get(job_id)
    if job is None or job.profile != "call-lists":
        raise ApiError(404, "job_not_found", f"no upload job {job_id}")
    return job


async def get_upload_job(request: web.Request) -> web.Response:
    """``GET .../lists/call-lists/jobs/{jobId}``: ``{"uploadJobs": [...]}``.

    Raises:
        ApiError: 401 (token), 404 (job).
    """
    _authenticate(request)
    return json_response({"uploadJobs": [upload_job_view(_upload_job(request))]})


async def cancel_upload_job(request: web.Request) -> web.Response:
    """``DELETE .../lists/call-lists/jobs/{jobId}``: cancel a job that has not ended.

    Raises:
        ApiError: 401 (token), 404 (job), 409 (already ended).
    """
    _authenticate(request)
    ctx = ctx_of(request)
    job, event = ctx.state.cancel_job(_upload_job(request).job_id)
    ctx.hub.publish([event])
    return json_response({"uploadJobs": [upload_job_view(job)]})


async def remove_prospects(request: web.Request) -> web.Response:
    """``DELETE .../lists/call-lists/{sourceName}/removeProspects`` with
    ``{prospectsToRemove: [{externalId}]}``: removes every record of the list named
    ``sourceName`` with one of those external ids. Answers ``{successfulRecords: [{externalId,
    resultCode: "Removed"}], failedRecords: [{externalId, resultCode: "NotFound"}]}``.

    Raises:
        ApiError: 401 (token), 404 (no call list of that name), 400 (body).
    """
    _authenticate(request)
    state = ctx_of(request).state
    source = request.match_info["sourceName"]
    lst = state.call_list_named(source)
    if lst is None:
        raise ApiError(404, "source_not_found", f"no source {source}")
    body = await read_json(request)
    prospects = body.get("prospectsToRemove") if isinstance(body, dict) else None
    if not isinstance(prospects, list) or not prospects:
        raise bad_request("invalid_body", "prospectsToRemove must be a non-empty array", field="prospectsToRemove")
    ids: list[str] = []
    for index, p in enumerate(prospects):
        ext = p.get("externalId") if isinstance(p, dict) else None
        if isinstance(ext, bool) or not isinstance(ext, str | int) or not str(ext):
            raise bad_request("invalid_body", f"prospectsToRemove[{index}].externalId must be a string or integer",
                              index=index, field="externalId")
        ids.append(str(ext))
    found = lst.remove_external_ids(set(ids))
    return json_response({
        "successfulRecords": [{"externalId": e, "resultCode": "Removed"} for e in ids if e in found],
        "failedRecords": [{"externalId": e, "resultCode": "NotFound"} for e in ids if e not in found],
    })


def add_routes(app: web.Application) -> None:
    """Register the call-lists list routes."""
    r = app.router
    r.add_post(f"{API}/lists/call-lists", create_list)
    r.add_get(f"{API}/lists/call-lists", list_lists)
    r.add_get(f"{API}/lists/call-lists/{{listId}}", get_list)
    r.add_post(f"{API}/lists/call-lists/{{listId}}/upload", upload)
    r.add_get(f"{API}/lists/call-lists/jobs/{{jobId}}", get_upload_job)
    r.add_delete(f"{API}/lists/call-lists/jobs/{{jobId}}", cancel_upload_job)
    r.add_delete(f"{API}/lists/call-lists/{{sourceName}}/removeProspects", remove_prospects)
