"""The ``Accept`` check: CXone answers a request that does not ask for JSON with an error whose
body says "No known way to render data". The simulator does the same, per profile
(``call_lists.accept``, ``v2.accept``; see :data:`~connector.simulator.config.AcceptMode`).

The status is ours: CXone's is not documented; 406 Not Acceptable is what HTTP names for it.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from connector.simulator.config import AcceptMode, SimulatorConfig
from connector.simulator.httputil import ctx_of, json_response

#: The answer's status (see the module docstring).
STATUS = 406
MESSAGE = "No known way to render data for the requested media types; send Accept: application/json"
#: Path prefixes of the call-lists profile (discovery, both token calls, the admin API).
CALL_LISTS_PREFIXES = ("/.well-known/", "/auth/", "/authentication/", "/inContactAPI/")
#: The v2 event stream: a WebSocket handshake renders nothing, so it is never checked.
V2_EVENTS = "/api/v2/events"


def _refused(params: list[str]) -> bool:
    """True when the parameters hold ``q=0`` (the range is explicitly not acceptable)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip()) <= 0
            except ValueError:
                return True
    return False


def media_ranges(header: str) -> list[str]:
    """The media ranges of an ``Accept`` value, lower-cased, without those of ``q=0``."""
    out: list[str] = []
    for part in header.split(","):
        media, *params = part.split(";")
        if media.strip() and not _refused(params):
            out.append(media.strip().lower())
    return out


def acceptable(header: str | None, mode: AcceptMode) -> bool:
    """Whether a request with this ``Accept`` header (None: absent) gets a JSON answer."""
    if mode == "off":
        return True
    if header is None:
        return mode == "negotiated"
    ranges = media_ranges(header)
    if mode == "required":
        return "application/json" in ranges
    return any(r in ("application/json", "application/*", "*/*") for r in ranges)


def mode_for(path: str, config: SimulatorConfig) -> AcceptMode:
    """The check that applies to ``path`` (``off`` outside both APIs, ``/_sim/`` included)."""
    if path.startswith("/api/v2/") and path != V2_EVENTS:
        return config.v2.accept
    if path.startswith(CALL_LISTS_PREFIXES):
        return config.call_lists.accept
    return "off"


@web.middleware
async def accept_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer 406 "No known way to render data" when the request does not ask for JSON."""
    mode = mode_for(request.path, ctx_of(request).config)
    if not acceptable(request.headers.get("Accept"), mode):
        return json_response({"error": "not_acceptable", "message": MESSAGE}, STATUS)
    return await handler(request)
