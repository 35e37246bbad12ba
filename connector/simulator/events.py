"""Profile ``v2`` event stream: WebSocket ``/api/v2/events`` on the HTTP port (aiohttp).

The client sends the tutorial's subscription frame
``{"eventTypes": ["outbound.contactlistitems.bulkinsert"], "filters": {"jobIds": [...]}}``
(more frames add job ids). The server confirms with a ``subscription.confirmed`` frame,
sends the current state of each subscribed job that has started (a job that already ended
gets its terminal event), then every transition of those jobs.

Faults: ``faults.websocket.drop_every_s`` closes the socket (cleanly or by aborting TCP);
``silent_after_s`` makes it send nothing more, not even pongs. Pings are answered by hand
(``autoping=False``) so that a silent socket can stop answering them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from connector.simulator.context import CTX, SimContext
from connector.simulator.events_hub import Subscriber
from connector.simulator.httputil import bearer, ctx_of
from connector.simulator.state import iso
from connector.simulator.v2 import SCOPE_EVENTS

EVENT_TYPE = "outbound.contactlistitems.bulkinsert"


def _frame(event_type: str, data: dict[str, Any], now: float) -> dict[str, Any]:
    return {"eventType": event_type, "timestamp": iso(now), "data": data}


def subscribe(ctx: SimContext, sub: Subscriber, text: str) -> None:
    """Apply one client frame: add its job ids, queue the confirmation and current states.

    A bad frame queues an ``error`` frame naming the problem; the socket stays open.
    """
    now = ctx.state.clock()
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        sub.queue.put_nowait(_frame("error", {"message": f"not JSON: {exc.msg}"}, now))
        return
    problem = None
    job_ids: list[str] = []
    if not isinstance(msg, dict):
        problem = "the subscription must be a JSON object"
    elif not isinstance(msg.get("eventTypes"), list) or EVENT_TYPE not in msg["eventTypes"]:
        problem = f"eventTypes must be an array containing {EVENT_TYPE!r}"
    else:
        filters = msg.get("filters", {})
        ids = filters.get("jobIds") if isinstance(filters, dict) else None
        if not isinstance(ids, list) or not all(isinstance(j, str) for j in ids):
            problem = "filters.jobIds must be an array of job id strings"
        else:
            job_ids = ids
    if problem is not None:
        sub.queue.put_nowait(_frame("error", {"message": problem}, now))
        return
    new_ids = [j for j in job_ids if j not in sub.job_ids]
    sub.job_ids.update(new_ids)
    sub.queue.put_nowait(_frame("subscription.confirmed", {"jobIds": sorted(sub.job_ids)}, now))
    # Same loop turn as the update above, so no transition falls between snapshot and stream.
    for job_id in new_ids:
        event = ctx.state.current_event(job_id)
        if event is not None:
            sub.queue.put_nowait(event.to_json())


async def _sender(ctx: SimContext, ws: web.WebSocketResponse, sub: Subscriber, request: web.Request,
                  silent: asyncio.Event) -> None:
    """Send queued frames; apply the drop and silence faults."""
    opened = time.monotonic()
    while not ws.closed:
        wf = ctx.faults.settings.websocket
        now = time.monotonic() - opened
        deadlines = [d for d in (wf.drop_every_s, wf.silent_after_s) if d > 0 and d > now]
        if wf.drop_every_s > 0 and now >= wf.drop_every_s:
            if wf.drop_mode == "abort" and request.transport is not None:
                request.transport.abort()
            else:
                await ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"simulated drop")
            return
        if wf.silent_after_s > 0 and now >= wf.silent_after_s:
            silent.set()
            # Silent until the client gives up; capped so the task cannot leak.
            await ctx.sleep(max(0.0, ctx.faults.settings.connections.hang_max_s - now))
            if request.transport is not None:
                request.transport.abort()
            return
        timeout = min(deadlines) - now if deadlines else 0.5
        try:
            frame = await asyncio.wait_for(sub.queue.get(), timeout)
        except TimeoutError:
            continue
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(json.dumps(frame))


async def events_socket(request: web.Request) -> web.WebSocketResponse:
    """``GET /api/v2/events`` (WebSocket upgrade).

    Raises:
        ApiError: 401 (missing, unknown or expired token when required) or 403 (no
            ``events:subscribe`` scope), answered before the upgrade.
    """
    ctx = ctx_of(request)
    token = bearer(request) or request.query.get("access_token")
    if token or ctx.config.v2.websocket_auth == "required":
        ctx.state.authenticate(token, "v2", SCOPE_EVENTS)
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    ctx.sockets.add(ws)
    sub = ctx.hub.subscribe()
    silent = asyncio.Event()
    sender = asyncio.create_task(_sender(ctx, ws, sub, request, silent))
    try:
        async for msg in ws:
            if silent.is_set():
                continue
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.TEXT:
                subscribe(ctx, sub, msg.data)
            elif msg.type == WSMsgType.BINARY:
                sub.queue.put_nowait(_frame("error", {"message": "binary frames are not supported"},
                                            ctx.state.clock()))
    finally:
        ctx.hub.unsubscribe(sub)
        ctx.sockets.discard(ws)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


async def close_all(app: web.Application) -> None:
    """Close every open event socket (on shutdown)."""
    for ws in list(app[CTX].sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator stopping")


def add_routes(app: web.Application) -> None:
    """Register the event socket route."""
    app.router.add_get("/api/v2/events", events_socket)
    app.on_shutdown.append(close_all)
