"""Profile ``call-lists`` DNC-group handlers: add and expire records (answered per record, inside
a 200), list a group's records page by page, and find the groups that hold a number.

A record whose number is not a phone number, or that ``faults.dnc`` names, fails on its own:
``success: false`` and an ``error`` text that quotes the number, as CXone's do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from connector.simulator.context import SimContext
from connector.simulator.csvfile import canonical_phone
from connector.simulator.dncstate import DncRecord
from connector.simulator.exceptions import bad_request
from connector.simulator.httputil import bearer, ctx_of, int_query, json_response, read_json
from connector.simulator.state import iso

API = r"/inContactAPI/services/{version:v[0-9]+\.0}"
#: Characters a phone number given as a string may hold (CXone strips the formatting).
_PHONE_TEXT = re.compile(r"[0-9+()\-. ]+")
#: Records per page of ``GET .../records`` when ``top`` is not given.
DEFAULT_TOP = 50


@dataclass(frozen=True)
class _Record:
    raw: object
    phone: str | None
    expired: str | None


def record_phone(raw: object) -> str | None:
    """The canonical digits of a record's ``phoneNumber`` (an integer or a string), or None
    when it is not a phone number."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        text = str(raw) if raw > 0 else ""
    elif isinstance(raw, str) and _PHONE_TEXT.fullmatch(raw):
        text = raw
    else:
        return None
    try:
        return canonical_phone(text)
    except ValueError:
        return None


async def _records(request: web.Request) -> list[_Record]:
    body = await read_json(request)
    records = body.get("dncGroupRecords") if isinstance(body, dict) else None
    if not isinstance(records, list) or not records:
        raise bad_request("invalid_body", "dncGroupRecords must be a non-empty array", field="dncGroupRecords")
    out: list[_Record] = []
    for index, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise bad_request("invalid_body", f"dncGroupRecords[{index}] must be an object", index=index)
        expired = rec.get("expiredDate")
        if expired is not None and not isinstance(expired, str):
            raise bad_request("invalid_body", f"dncGroupRecords[{index}].expiredDate must be a string",
                              index=index, field="expiredDate")
        raw = rec.get("phoneNumber")
        out.append(_Record(raw, record_phone(raw), expired))
    return out


def _failure(ctx: SimContext, rec: _Record, group: str, verb: str) -> str | None:
    """Why this record fails (quoting its number, as CXone's texts do), or None."""
    if rec.phone is None:
        return f"Invalid phone number: {rec.raw}"
    if ctx.faults.dnc_record_fails(rec.phone):
        return f"Phone number {rec.phone} could not be {verb} DNC group {group} (simulated failure)"
    return None


def _results(ctx: SimContext, records: list[_Record], group: str, verb: str,
             echo_phone: bool) -> tuple[list[dict[str, Any]], list[_Record]]:
    """Per-record results in request order, and the records that succeed."""
    results: list[dict[str, Any]] = []
    good: list[_Record] = []
    for rec in records:
        error = _failure(ctx, rec, group, verb)
        result: dict[str, Any] = {"success": error is None, "error": error, "formattedPhone": rec.phone}
        if echo_phone:
            result["phoneNumber"] = rec.raw
        results.append(result)
        if error is None:
            good.append(rec)
    return results, good


def _authenticate(request: web.Request) -> SimContext:
    ctx = ctx_of(request)
    ctx.state.authenticate(bearer(request), "call-lists")
    return ctx


async def add_records(request: web.Request) -> web.Response:
    """``POST .../dnc-groups/{groupId}/records``: ``{resultSet: {errorCount, recordResults}}``,
    each result ``{success, error, formattedPhone, phoneNumber}``.

    Raises:
        ApiError: 401 (token), 400 (body shape, tenant limit).
    """
    ctx = _authenticate(request)
    group = request.match_info["groupId"]
    results, good = _results(ctx, await _records(request), group, "added to", echo_phone=True)
    if good:
        ctx.state.add_dnc_records(group, {r.phone: r.expired for r in good if r.phone is not None})
    errors = len(results) - len(good)
    return json_response({"resultSet": {"errorCount": errors, "recordResults": results}})


async def expire_records(request: web.Request) -> web.Response:
    """``DELETE .../dnc-groups/{groupId}/records``: expire records; ``{errorCount, recordResults}``,
    each result ``{success, error, formattedPhone}``. Expiring a number the group does not
    hold succeeds (nothing blocks it).

    Raises:
        ApiError: 401 (token), 400 (body shape).
    """
    ctx = _authenticate(request)
    group = request.match_info["groupId"]
    results, good = _results(ctx, await _records(request), group, "expired in", echo_phone=False)
    ctx.state.dnc.expire(group, [r.phone for r in good if r.phone is not None])
    return json_response({"errorCount": len(results) - len(good), "recordResults": results})


def _record_view(rec: DncRecord) -> dict[str, Any]:
    return {"recordId": rec.record_id, "phoneNumber": rec.phone, "formattedPhone": rec.phone,
            "expiredDate": rec.expired_date, "dateCollected": iso(rec.date_collected)}


async def list_records(request: web.Request) -> web.Response:
    """``GET .../dnc-groups/{groupId}/records[?top=&skip=]``:
    ``{resultSet: {totalRecords, dncRecords: [{recordId, phoneNumber, formattedPhone, expiredDate,
    dateCollected}]}}``, in the order added; ``top`` defaults to 50 and is cut to
    ``call_lists.max_page_size``.

    Raises:
        ApiError: 401 (token), 400 (``top``/``skip`` not a non-negative integer).
    """
    ctx = _authenticate(request)
    top = min(int_query(request, "top", DEFAULT_TOP), ctx.config.call_lists.max_page_size)
    page, total = ctx.state.dnc.page(request.match_info["groupId"], top, int_query(request, "skip", 0))
    return json_response({"resultSet": {"totalRecords": total, "dncRecords": [_record_view(r) for r in page]}})


def _group_id(group: str) -> int | str:
    return int(group) if group.isdigit() else group


async def search(request: web.Request) -> web.Response:
    """``POST .../dnc-groups/search?phoneNumber=``: ``{searchResults: [{dncGroupId, dncGroupName,
    dncGroupDescription, formattedPhone, expiredDate, dateCollected, lastUpdateTime}]}``.

    Raises:
        ApiError: 401 (token), 400 (missing or bad phoneNumber).
    """
    ctx = _authenticate(request)
    phone = record_phone(request.query.get("phoneNumber", ""))
    if phone is None:
        raise bad_request("invalid_request", "phoneNumber must be a phone number", field="phoneNumber")
    found = [{"dncGroupId": _group_id(g), "dncGroupName": f"group {g}", "dncGroupDescription": "",
              "formattedPhone": rec.phone, "expiredDate": rec.expired_date,
              "dateCollected": iso(rec.date_collected), "lastUpdateTime": iso(rec.date_collected)}
             for g, rec in ctx.state.dnc.holding(phone)]
    return json_response({"searchResults": found})


def add_routes(app: web.Application) -> None:
    """Register the DNC-group routes."""
    r = app.router
    r.add_post(f"{API}/dnc-groups/search", search)
    r.add_post(f"{API}/dnc-groups/{{groupId}}/records", add_records)
    r.add_delete(f"{API}/dnc-groups/{{groupId}}/records", expire_records)
    r.add_get(f"{API}/dnc-groups/{{groupId}}/records", list_records)
