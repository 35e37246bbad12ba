"""Webhook receiver: ``POST /_sim/webhooks/{name}`` records every delivery with its headers
and body, so tests can check signatures and idempotency keys; it can be told to fail the
next N deliveries.
"""

from __future__ import annotations

from aiohttp import web

from connector.simulator.exceptions import bad_request
from connector.simulator.httputil import ctx_of, json_response


async def receive(request: web.Request) -> web.Response:
    """``POST /_sim/webhooks/{name}``: record the delivery; 200, or the failure still due."""
    ctx = ctx_of(request)
    name = request.match_info["name"]
    body = (await request.read()).decode("utf-8", errors="replace")
    status = ctx.state.hooks.receive(name, request.method, dict(request.headers), body)
    delivery = ctx.state.webhooks[name][-1]
    if status >= 400:
        return json_response({"error": "simulated_failure", "delivery": delivery.delivery_id}, status)
    return json_response({"received": delivery.delivery_id}, status)


async def deliveries(request: web.Request) -> web.Response:
    """``GET /_sim/webhooks/{name}``: every delivery kept, oldest first."""
    name = request.match_info["name"]
    history = ctx_of(request).state.webhooks.get(name, ())
    return json_response({"name": name, "count": len(history), "deliveries": [d.to_json() for d in history]})


async def names(request: web.Request) -> web.Response:
    """``GET /_sim/webhooks``: ``{name: delivery count}``."""
    hooks = ctx_of(request).state.webhooks
    return json_response({name: len(history) for name, history in sorted(hooks.items())})


async def fail(request: web.Request) -> web.Response:
    """``POST /_sim/webhooks/{name}/fail?count=N[&status=500]``: fail the next N deliveries.

    Raises:
        ApiError: 400 when ``count`` or ``status`` is not a valid number.
    """
    name = request.match_info["name"]
    try:
        count = int(request.query.get("count", "1"))
        status = int(request.query.get("status", "500"))
    except ValueError:
        raise bad_request("invalid_request", "count and status must be integers") from None
    if count < 0 or not 400 <= status <= 599:
        raise bad_request("invalid_request", "count must be >= 0 and status a 4xx or 5xx")
    ctx_of(request).state.hooks.fail(name, count, status)
    return json_response({"name": name, "failNext": count, "status": status})


def add_routes(app: web.Application) -> None:
    """Register the webhook receiver routes."""
    app.router.add_get("/_sim/webhooks", names)
    app.router.add_post("/_sim/webhooks/{name}", receive)
    app.router.add_put("/_sim/webhooks/{name}", receive)
    app.router.add_get("/_sim/webhooks/{name}", deliveries)
    app.router.add_post("/_sim/webhooks/{name}/fail", fail)
