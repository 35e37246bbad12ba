"""Inspection API under ``/_sim/`` (JSON): lists and contacts, jobs, request counts,
idempotent replays, DNC groups, faults (read and change) and reset."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connector.errors import ConfigError
from connector.simulator.config import merge_faults, to_mapping
from connector.simulator.context import SimContext
from connector.simulator.exceptions import ApiError, bad_request
from connector.simulator.httputil import ctx_of, int_query, json_response, read_json

#: ``POST /_sim/reset`` calls this (set by the server) to restore the start-up state.
RESET_HOOK = web.AppKey("reset_hook", object)


async def health(request: web.Request) -> web.Response:
    """``GET /_sim/health``."""
    return json_response({"status": "ok"})


async def lists(request: web.Request) -> web.Response:
    """``GET /_sim/lists``: every list of both profiles, with its contact count."""
    state = ctx_of(request).state
    return json_response({"lists": [lst.summary() for lst in state.lists.values()],
                          "activeRecords": state.active_records()})


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


async def contacts(request: web.Request) -> web.Response:
    """``GET /_sim/lists/{listId}/contacts[?offset=&limit=&dialable=true|invalid=true]``: contacts
    keyed by phone; with ``dialable=true`` only those whose number is in no DNC group, with
    ``invalid=true`` the rejected records instead (call-lists).

    Raises:
        ApiError: 404 for an unknown list; 400 for bad paging parameters.
    """
    list_id = request.match_info["listId"]
    state = ctx_of(request).state
    lst = state.lists.get(list_id)
    if lst is None:
        raise ApiError(404, "list_not_found", f"no list {list_id}")
    dialable, invalid = _flag(request, "dialable"), _flag(request, "invalid")
    if dialable and invalid:
        raise bad_request("invalid_request", "dialable and invalid exclude each other")
    chosen = state.dialable(list_id) if dialable else lst.rejected if invalid else lst.contacts
    offset = int_query(request, "offset", 0)
    limit = int_query(request, "limit", len(chosen))
    page = list(chosen.values())[offset: offset + limit]
    return json_response({**lst.summary(), "offset": offset, "dialable": dialable, "invalid": invalid,
                          "dialableCount": len(chosen) if dialable else None, "contacts": page})


async def jobs(request: web.Request) -> web.Response:
    """``GET /_sim/jobs[?status=&listId=&profile=]``: jobs with states and item counts."""
    ctx = ctx_of(request)
    wanted = {k: request.query[k] for k in ("status", "listId", "profile") if k in request.query}
    out = [j.to_json() for j in ctx.state.jobs.values()]
    out = [j for j in out if all(str(j[k]) == v for k, v in wanted.items())]
    counts: dict[str, int] = {}
    for j in ctx.state.jobs.values():
        counts[j.status] = counts.get(j.status, 0) + 1
    return json_response({"jobs": out, "countsByStatus": counts})


async def job(request: web.Request) -> web.Response:
    """``GET /_sim/jobs/{jobId}``.

    Raises:
        ApiError: 404 for an unknown job.
    """
    job_id = request.match_info["jobId"]
    found = ctx_of(request).state.jobs.get(job_id)
    if found is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return json_response(found.to_json())


def _replays(ctx: SimContext) -> dict[str, Any]:
    return {"total": sum(ctx.state.replays.values()), "byProfile": dict(ctx.state.replays)}


async def requests_(request: web.Request) -> web.Response:
    """``GET /_sim/requests``: counts by endpoint and status, plus idempotent replays."""
    ctx = ctx_of(request)
    counts = ctx.state.request_counts()
    return json_response({"byEndpoint": counts, "total": sum(sum(c.values()) for c in counts.values()),
                          "idempotentReplays": _replays(ctx)})


async def replays(request: web.Request) -> web.Response:
    """``GET /_sim/replays``: how many requests returned an earlier job."""
    return json_response(_replays(ctx_of(request)))


async def dnc_groups(request: web.Request) -> web.Response:
    """``GET /_sim/dnc-groups``: every DNC group and its records."""
    return json_response(ctx_of(request).state.dnc.view())


async def get_faults(request: web.Request) -> web.Response:
    """``GET /_sim/faults``: the fault settings in force."""
    return json_response(to_mapping(ctx_of(request).faults.settings))


async def set_faults(request: web.Request) -> web.Response:
    """``POST /_sim/faults``: merge a partial JSON update into the fault settings.

    Raises:
        ApiError: 400 naming every unknown key or bad value.
    """
    ctx = ctx_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("invalid_body", "the body must be a JSON object of fault settings")
    try:
        faults = merge_faults(ctx.faults.settings, body)
    except ConfigError as exc:
        raise bad_request("invalid_faults", str(exc), problems=[list(p) for p in exc.problems]) from None
    ctx.faults.update(faults)
    return json_response(to_mapping(faults))


async def config(request: web.Request) -> web.Response:
    """``GET /_sim/config``: the whole configuration (secrets hidden)."""
    return json_response(to_mapping(ctx_of(request).config))


async def reset(request: web.Request) -> web.Response:
    """``POST /_sim/reset``: forget all state and restore the start-up fault settings."""
    hook = request.app[RESET_HOOK]
    if callable(hook):
        hook()
    return json_response({"status": "reset"})


def add_routes(app: web.Application) -> None:
    """Register the inspection routes."""
    r = app.router
    r.add_get("/_sim/health", health)
    r.add_get("/_sim/lists", lists)
    r.add_get("/_sim/lists/{listId}/contacts", contacts)
    r.add_get("/_sim/jobs", jobs)
    r.add_get("/_sim/jobs/{jobId}", job)
    r.add_get("/_sim/requests", requests_)
    r.add_get("/_sim/replays", replays)
    r.add_get("/_sim/dnc-groups", dnc_groups)
    r.add_get("/_sim/faults", get_faults)
    r.add_post("/_sim/faults", set_faults)
    r.add_get("/_sim/config", config)
    r.add_post("/_sim/reset", reset)
