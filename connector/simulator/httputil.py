"""Small aiohttp helpers shared by the handlers: JSON answers, bodies, bearer tokens,
Basic auth, and the middlewares (error mapping, request counting, fault injection).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from connector.simulator.config import SimulatorConfig
from connector.simulator.context import CTX, SimContext
from connector.simulator.exceptions import ApiError, bad_request

log = logging.getLogger(__name__)

def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer."""
    return web.json_response(data, status=status, headers=headers)


def max_body_bytes(config: SimulatorConfig) -> int:
    """Largest request body accepted: a base64 upload of the largest file, plus slack."""
    return config.call_lists.max_file_bytes * 4 // 3 + 1024 * 1024


def ctx_of(request: web.Request) -> SimContext:
    """The simulator context of this request's app."""
    return request.app[CTX]


def int_query(request: web.Request, name: str, default: int) -> int:
    """A non-negative integer query parameter (``default`` when absent).

    Raises:
        ApiError: 400 ``invalid_request`` when it is not a non-negative integer.
    """
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise bad_request("invalid_request", f"{name} must be an integer", field=name) from None
    if value < 0:
        raise bad_request("invalid_request", f"{name} must not be negative", field=name)
    return value


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON.

    Raises:
        ApiError: 400 ``invalid_json`` (empty, not UTF-8 or not JSON, naming where) or
            413 ``body_too_large``.
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = max_body_bytes(ctx_of(request).config)
        raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes") from None
    if not raw.strip():
        raise bad_request("invalid_json", "the body is empty; a JSON object is expected")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("invalid_json", "the body is not UTF-8") from None
    except RecursionError:
        raise bad_request("invalid_json", "the body nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise bad_request("invalid_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None


async def read_form(request: web.Request) -> dict[str, str]:
    """A form-encoded body as a plain dict.

    Raises:
        ApiError: 400 ``invalid_request`` when the body is not form-encoded.
    """
    ctype = request.content_type
    if ctype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(400, "invalid_request", "the body must be application/x-www-form-urlencoded",
                       error_description="the body must be application/x-www-form-urlencoded")
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def bearer(request: web.Request) -> str | None:
    """The bearer token of the Authorization header, if any."""
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def basic_auth(request: web.Request) -> tuple[str, str] | None:
    """``(user, password)`` of a Basic Authorization header, or None when absent or garbled."""
    auth = request.headers.get("Authorization", "")
    scheme, _, encoded = auth.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


def endpoint_of(request: web.Request) -> str:
    """``METHOD /route/{pattern}``: a bounded label for counting requests."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else '<unmatched>'}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`ApiError` and aiohttp's own HTTP errors into JSON answers."""
    try:
        return await handler(request)
    except ApiError as exc:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
        return json_response(exc.body(), exc.status, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status, "http_error")
        return json_response({"error": code, "message": exc.reason}, exc.status)
    except Exception:
        # A bug, not a fault: answer JSON and keep serving.
        log.exception("simulator handler failed on %s %s", request.method, request.path)
        return json_response({"error": "internal", "message": "simulator bug; see its log"}, 500)


def _counted(request: web.Request) -> bool:
    path = request.path
    return not path.startswith("/_sim/") or (
        path.startswith("/_sim/webhooks/") and request.method == "POST" and not path.endswith("/fail"))


async def _close_unanswered(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Nothing reaches the client: the connection is gone before aiohttp writes this.
    return web.Response(status=499)


async def _hang(request: web.Request, ctx: SimContext) -> web.StreamResponse:
    """Answer nothing until the client gives up, the cap passes or the simulator stops."""
    waited = 0.0
    cap = ctx.faults.settings.connections.hang_max_s
    while waited < cap:
        transport = request.transport
        if transport is None or transport.is_closing():
            break
        if await ctx.sleep(min(0.1, cap - waited)):
            break
        waited += 0.1
    return await _close_unanswered(request)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each request by endpoint and outcome, injecting the configured faults."""
    ctx = ctx_of(request)
    counted = _counted(request)
    endpoint = endpoint_of(request)
    decision = ctx.faults.decide(request.path)
    if decision.delay_s > 0 and await ctx.sleep(decision.delay_s):
        return await _close_unanswered(request)
    if decision.action in ("drop", "hang"):
        if counted:
            ctx.state.count_request(endpoint, "dropped" if decision.action == "drop" else "hung")
        if decision.action == "drop":
            return await _close_unanswered(request)
        return await _hang(request, ctx)
    if decision.action in ("rate_limit", "error"):
        headers = {"Retry-After": str(decision.retry_after_s)} if decision.retry_after_s is not None else None
        code = "rate_limited" if decision.status == 429 else "simulated_error"
        response: web.StreamResponse = json_response(
            {"error": code, "message": f"simulated {decision.status} (faults)"}, decision.status, headers)
    else:
        response = await handler(request)
    if counted:
        ctx.state.count_request(endpoint, response.status)
    return response
