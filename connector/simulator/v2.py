"""Profile ``v2`` REST handlers: OAuth token, bulk insert, job status (the tutorial's API)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any

from aiohttp import web

from connector.simulator.exceptions import ApiError
from connector.simulator.httputil import basic_auth, bearer, ctx_of, json_response, read_form, read_json
from connector.simulator.state import Job
from connector.simulator.tokens import opaque_token
from connector.simulator.validation import validate_bulk_insert

SCOPE_WRITE = "outbound:contactlistitem:write"
SCOPE_JOB_READ = "outbound:job:read"
SCOPE_EVENTS = "events:subscribe"


def _oauth_error(status: int, code: str, description: str) -> ApiError:
    return ApiError(status, code, description, error_description=description)


def client_credentials(request: web.Request, form: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from HTTP Basic auth, else from the form."""
    basic = basic_auth(request)
    if basic is not None:
        return basic
    return form.get("client_id", ""), form.get("client_secret", "")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())


async def token(request: web.Request) -> web.Response:
    """``POST /api/v2/oauth2/token``: client credentials grant.

    Raises:
        ApiError: 400 ``unsupported_grant_type``/``invalid_scope``/``invalid_request``,
            401 ``invalid_client``.
    """
    ctx = ctx_of(request)
    cfg = ctx.config.v2
    form = await read_form(request)
    if form.get("grant_type") != "client_credentials":
        raise _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    client_id, secret = client_credentials(request, form)
    if client_id != cfg.client_id or not same_secret(secret, cfg.client_secret.get()):
        raise _oauth_error(401, "invalid_client", "unknown client or wrong client secret")
    allowed = cfg.scopes.split()
    requested = form.get("scope", "").split() or allowed
    unknown = [s for s in requested if s not in allowed]
    if unknown:
        raise _oauth_error(400, "invalid_scope", f"scope(s) not allowed for this client: {' '.join(unknown)}")
    lifetime = ctx.faults.token_lifetime(cfg.token_lifetime_s)
    access_token = opaque_token()
    ctx.state.issue_token(access_token, "v2", client_id, requested, lifetime)
    return json_response({"access_token": access_token, "token_type": "Bearer",
                          "expires_in": max(1, math.ceil(lifetime)), "scope": " ".join(requested)})


def _fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _contact(item: dict[str, Any]) -> dict[str, Any]:
    custom = dict(item.get("customFields") or {})
    zone = custom.get("timeZone")
    return {
        "phoneNumber": item["phoneNumber"],
        "firstName": item.get("firstName"),
        "lastName": item.get("lastName"),
        "email": item.get("email"),
        "customFields": custom,
        # what a dialler would read for calling hours: the ``timeZone`` custom field
        "timeZone": zone if isinstance(zone, str) and zone else None,
    }


async def bulk_insert(request: web.Request) -> web.Response:
    """``POST /api/v2/outbound/contactlistitems/bulkinsert``: queue a job; 202 ``{"id"}``.

    Raises:
        ApiError: 401/403 (token), 400 (body, item or tenant limit), 413 (body size),
            422 (idempotency key reused with another body).
    """
    ctx = ctx_of(request)
    ctx.state.authenticate(bearer(request), "v2", SCOPE_WRITE)
    body = await read_json(request)
    insert = validate_bulk_insert(body, ctx.config.v2.max_items)
    key = request.headers.get("Idempotency-Key") or None
    fingerprint = _fingerprint(body)
    if key is not None:
        original = ctx.state.find_replay("v2", key, fingerprint)
        if original is not None:
            return json_response({"id": original.job_id}, 202, {"Idempotent-Replayed": "true"})
    job = ctx.state.create_job(
        "v2", insert.contact_list_id, [_contact(i) for i in insert.items], ctx.faults.job_outcome(),
        idempotency_key=key, fingerprint=fingerprint,
    )
    return json_response({"id": job.job_id}, 202)


def job_view(job: Job) -> dict[str, Any]:
    """The v2 job resource."""
    view = job.to_json()
    return {
        "id": job.job_id, "status": job.status, "progress": job.progress, "itemCount": job.item_count,
        "processedCount": view["processedCount"], "contactListId": job.list_id,
        "createdAt": view["createdAt"], "startedAt": view["startedAt"], "completedAt": view["completedAt"],
        "failureReason": job.failure_reason,
    }


async def get_job(request: web.Request) -> web.Response:
    """``GET /api/v2/outbound/jobs/{jobId}``: job status for polling.

    Raises:
        ApiError: 401/403 (token), 404 ``job_not_found``.
    """
    ctx = ctx_of(request)
    ctx.state.authenticate(bearer(request), "v2", SCOPE_JOB_READ)
    job_id = request.match_info["jobId"]
    job = ctx.state.jobs.get(job_id)
    if job is None or job.profile != "v2":
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return json_response(job_view(job))


def add_routes(app: web.Application) -> None:
    """Register the v2 REST routes."""
    app.router.add_post("/api/v2/oauth2/token", token)
    app.router.add_post("/api/v2/outbound/contactlistitems/bulkinsert", bulk_insert)
    app.router.add_get("/api/v2/outbound/jobs/{jobId}", get_job)
