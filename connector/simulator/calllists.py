"""Profile ``call-lists`` handlers: OpenID and API discovery, password-grant token (a JWT
carrying ``tenantId``), call-list mappings, uploads, upload jobs and DNC groups.

Admin routes live under ``/inContactAPI/services/v{N}.0/``; any ``vNN.0`` is accepted.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from aiohttp import web

from connector.simulator.csvfile import canonical_phone, decode_file, parse_records
from connector.simulator.exceptions import ApiError, bad_request
from connector.simulator.httputil import bearer, ctx_of, json_response, read_form, read_json
from connector.simulator.state import ContactList, Job, iso
from connector.simulator.tokens import encode_jwt
from connector.simulator.v2 import client_credentials, same_secret

API = r"/inContactAPI/services/{version:v[0-9]+\.0}"
#: Upload body fields and the JSON types each accepts.
UPLOAD_FIELDS: dict[str, tuple[type, ...]] = {
    "listFile": (str,), "fileName": (str,), "skillId": (int, str), "defaultTimeZone": (str,),
    "forceOverwrite": (bool,), "expirationDate": (str,), "startSkill": (bool,), "sendEmail": (bool,),
}


def _origin(request: web.Request) -> str:
    return str(request.url.origin())


async def openid_configuration(request: web.Request) -> web.Response:
    """``GET /.well-known/openid-configuration``."""
    base = _origin(request)
    return json_response({
        "issuer": base,
        "token_endpoint": f"{base}/auth/token",
        "authorization_endpoint": f"{base}/auth/authorize",
        "jwks_uri": f"{base}/auth/jwks",
        "grant_types_supported": ["password"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["HS256"],
    })


async def cxone_configuration(request: web.Request) -> web.Response:
    """``GET /.well-known/cxone-configuration?tenantId=``: where the tenant's API lives.

    Raises:
        ApiError: 400 without ``tenantId``; 404 for another tenant.
    """
    cfg = ctx_of(request).config.call_lists
    tenant = request.query.get("tenantId", "")
    if not tenant:
        raise bad_request("invalid_request", "the tenantId query parameter is required", field="tenantId")
    if tenant != cfg.tenant_id:
        raise ApiError(404, "tenant_not_found", f"no tenant {tenant}")
    return json_response({"api_endpoint": _origin(request), "area": cfg.area, "tenantId": tenant})


async def token(request: web.Request) -> web.Response:
    """``POST /auth/token``: password grant with an access key.

    Raises:
        ApiError: 400 ``unsupported_grant_type``/``invalid_grant``, 401 ``invalid_client``.
    """
    ctx = ctx_of(request)
    cfg = ctx.config.call_lists
    form = await read_form(request)
    if form.get("grant_type") != "password":
        raise ApiError(400, "unsupported_grant_type", "grant_type must be password",
                       error_description="grant_type must be password")
    client_id, secret = client_credentials(request, form)
    if client_id != cfg.client_id or not same_secret(secret, cfg.client_secret.get()):
        raise ApiError(401, "invalid_client", "unknown client or wrong client secret",
                       error_description="unknown client or wrong client secret")
    if form.get("username") != cfg.access_key_id or not same_secret(
            form.get("password", ""), cfg.access_key_secret.get()):
        raise ApiError(400, "invalid_grant", "unknown access key or wrong access key secret",
                       error_description="unknown access key or wrong access key secret")
    lifetime = ctx.faults.token_lifetime(cfg.token_lifetime_s)
    now = ctx.state.clock()
    claims = {"iss": _origin(request), "sub": cfg.access_key_id, "aud": client_id, "tenantId": cfg.tenant_id,
              "iat": int(now), "exp": int(now + lifetime), "jti": uuid.uuid4().hex}
    access_token = encode_jwt(claims, cfg.jwt_secret.get().encode())
    ctx.state.issue_token(access_token, "call-lists", client_id, (), lifetime, cfg.tenant_id)
    return json_response({"access_token": access_token, "token_type": "Bearer",
                          "expires_in": max(1, math.ceil(lifetime)), "issued_token_type": "access_token"})


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
            "recordCount": len(lst.contacts)}


def _is_mapping(m: object) -> bool:
    return isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("fieldName", "fieldValue"))


async def create_list(request: web.Request) -> web.Response:
    """``POST .../lists/call-lists?listName=&externalIdColumn=`` with ``destinationMappings``.

    Returns ``{"listId"}``; a known ``listName`` returns its existing list.

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
    lst, _created = ctx_of(request).state.create_call_list(name, ext_col, phones[0], clean)
    return json_response({"listId": int(lst.list_id)})


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
    items = [{"phoneNumber": r.phone, "externalId": r.external_id, "fields": r.fields} for r in records]
    job = ctx.state.create_job("call-lists", lst.list_id, items, ctx.faults.job_outcome(),
                               idempotency_key=key, file_name=file_name,
                               force_overwrite=bool(body.get("forceOverwrite")))
    return json_response({"jobId": job.job_id})


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


async def _dnc_records(request: web.Request, need_records: bool) -> dict[str, str | None]:
    body = await read_json(request)
    records = body.get("dncGroupRecords") if isinstance(body, dict) else None
    if not isinstance(records, list) or (need_records and not records):
        raise bad_request("invalid_body", "dncGroupRecords must be a non-empty array",
                          field="dncGroupRecords")
    out: dict[str, str | None] = {}
    for index, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("phoneNumber"), str):
            raise bad_request("invalid_body", f"dncGroupRecords[{index}].phoneNumber must be a string",
                              index=index, field="phoneNumber")
        expired = rec.get("expiredDate")
        if expired is not None and not isinstance(expired, str):
            raise bad_request("invalid_body", f"dncGroupRecords[{index}].expiredDate must be a string",
                              index=index, field="expiredDate")
        try:
            out[canonical_phone(rec["phoneNumber"])] = expired
        except ValueError as exc:
            raise bad_request("invalid_body", f"dncGroupRecords[{index}]: {exc}", index=index,
                              field="phoneNumber") from None
    return out


async def add_dnc_records(request: web.Request) -> web.Response:
    """``POST .../dnc-groups/{groupId}/records``.

    Raises:
        ApiError: 401 (token), 400 (body, phone numbers, tenant limit).
    """
    _authenticate(request)
    group = request.match_info["groupId"]
    records = await _dnc_records(request, need_records=True)
    state = ctx_of(request).state
    added = state.add_dnc_records(group, records)
    return json_response({"dncGroupId": group, "added": added, "recordCount": len(state.dnc_groups[group])})


async def remove_dnc_records(request: web.Request) -> web.Response:
    """``DELETE .../dnc-groups/{groupId}/records``: expire records.

    Raises:
        ApiError: 401 (token), 400 (body, phone numbers).
    """
    _authenticate(request)
    group = request.match_info["groupId"]
    records = await _dnc_records(request, need_records=True)
    state = ctx_of(request).state
    removed = state.remove_dnc_records(group, records)
    return json_response({"dncGroupId": group, "removed": removed,
                          "recordCount": len(state.dnc_groups.get(group, {}))})


async def search_dnc(request: web.Request) -> web.Response:
    """``POST .../dnc-groups/search?phoneNumber=``: the groups holding a number.

    Raises:
        ApiError: 401 (token), 400 (missing or bad phoneNumber).
    """
    _authenticate(request)
    try:
        phone = canonical_phone(request.query.get("phoneNumber", ""))
    except ValueError as exc:
        raise bad_request("invalid_request", f"phoneNumber: {exc}", field="phoneNumber") from None
    groups = ctx_of(request).state.dnc_groups
    found = [{"dncGroupId": g, "phoneNumber": phone, "expiredDate": recs[phone]}
             for g, recs in groups.items() if phone in recs]
    return json_response({"dncGroupRecords": found, "searchedAt": iso(time.time())})


def add_routes(app: web.Application) -> None:
    """Register the call-lists routes."""
    r = app.router
    r.add_get("/.well-known/openid-configuration", openid_configuration)
    r.add_get("/.well-known/cxone-configuration", cxone_configuration)
    r.add_post("/auth/token", token)
    r.add_post(f"{API}/lists/call-lists", create_list)
    r.add_get(f"{API}/lists/call-lists", list_lists)
    r.add_post(f"{API}/lists/call-lists/{{listId}}/upload", upload)
    r.add_get(f"{API}/lists/call-lists/jobs/{{jobId}}", get_upload_job)
    r.add_delete(f"{API}/lists/call-lists/jobs/{{jobId}}", cancel_upload_job)
    r.add_post(f"{API}/dnc-groups/search", search_dnc)
    r.add_post(f"{API}/dnc-groups/{{groupId}}/records", add_dnc_records)
    r.add_delete(f"{API}/dnc-groups/{{groupId}}/records", remove_dnc_records)
