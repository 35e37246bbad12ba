"""The HTTP edge: one aiohttp session, error mapping, and the retry loop.

``Http.send`` performs one request and maps every aiohttp/OS error or timeout to a
:class:`~connector.cxone.exceptions.TransportError`. ``request_with_retries`` adds
``Accept: application/json`` (CXone answers "No known way to render data" without it) and
the bearer token, refreshes it once on a 401, and retries retriable failures with backoff
(``Retry-After`` honoured) up to ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from connector.cxone.backoff import error_for_exception, error_for_status, retry_delay
from connector.cxone.exceptions import (
    AuthError,
    CXoneError,
    ProtocolError,
    RateLimitedError,
    RetriesExhaustedError,
    ServerError,
    TransportError,
)
from connector.cxone.pacing import Pacer
from connector.ops.metrics import status_class

if TYPE_CHECKING:
    from connector.config import CXoneSettings
    from connector.cxone.auth import TokenCache
    from connector.ops.metrics import Metrics

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
#: Sent with every CXone request (token calls included; see ``connector.cxone.auth``).
ACCEPT_JSON = {"Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class Response:
    """A fully read response."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ProtocolError: the body is not JSON.
        """
        try:
            return jsonlib.loads(self.body)
        except ValueError:
            raise ProtocolError(f"expected JSON, got {self.text()[:200]!r}") from None


def make_session(settings: CXoneSettings) -> aiohttp.ClientSession:
    """The one session for CXone traffic, with explicit timeouts from the settings."""
    timeout = aiohttp.ClientTimeout(
        total=settings.request_timeout_s,
        connect=settings.connect_timeout_s,
        sock_connect=settings.connect_timeout_s,
    )
    return aiohttp.ClientSession(timeout=timeout, raise_for_status=False)


def retry_reason(err: CXoneError) -> str:
    """The ``reason`` label of a retry after ``err`` (see :data:`connector.ops.metrics.RETRY_REASONS`)."""
    if isinstance(err, RateLimitedError):
        return "rate_limited"
    if isinstance(err, ServerError):
        return "server_error"
    if isinstance(err, TransportError):
        return "io_error"
    if isinstance(err, AuthError):
        return "unauthorized"
    return "other"


class Http:
    """Sends single requests on a shared session.

    Args:
        session: the aiohttp session (owned by the caller).
        clock: epoch seconds, for ``Retry-After`` dates.
        metrics: where CXone requests are counted (requests sent with an ``endpoint``);
            ``None`` records nothing (the webhook sender shares this class).
    """

    def __init__(self, session: aiohttp.ClientSession, *, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        self.session = session
        self.clock = clock
        self.metrics = metrics

    def _record(self, endpoint: str | None, status: int | None, started: float) -> None:
        m = self.metrics
        if m is None or endpoint is None:
            return
        m.cxone_requests.labels(endpoint=endpoint, status_class=status_class(status)).inc()
        m.cxone_request_duration.labels(endpoint=endpoint).observe(time.monotonic() - started)
        if status == 429:
            m.cxone_rate_limited.labels(endpoint=endpoint).inc()

    def record_retry(self, endpoint: str | None, reason: str) -> None:
        """Count one retry of ``endpoint`` (a no-op without metrics or endpoint)."""
        if self.metrics is not None and endpoint is not None:
            self.metrics.cxone_retries.labels(endpoint=endpoint, reason=reason).inc()

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, str] | None = None,
        endpoint: str | None = None,
    ) -> Response:
        """One request, fully read.

        Args:
            endpoint: the ``endpoint`` label (:data:`connector.ops.metrics.CXONE_ENDPOINTS`) the
                request is counted and timed under; ``None`` does not count it.

        Raises:
            TransportError: connection error, disconnect or timeout.
        """
        started = time.monotonic()
        try:
            async with self.session.request(
                method, url, headers=dict(headers or {}), json=json, data=data, params=params
            ) as resp:
                body = await resp.read()
                result = Response(resp.status, dict(resp.headers), body)
        except aiohttp.ClientError as exc:
            self._record(endpoint, None, started)
            raise error_for_exception(OSError(f"{type(exc).__name__}: {exc}")) from None
        except (TimeoutError, OSError) as exc:
            self._record(endpoint, None, started)
            raise error_for_exception(exc) from None
        self._record(endpoint, result.status, started)
        return result

    def check(self, resp: Response) -> Response:
        """``resp`` when it is a success.

        Raises:
            HTTPStatusError: the matching subclass for an error status.
        """
        err = error_for_status(resp.status, resp.text(), retry_after=resp.headers.get("Retry-After"),
                               now=self.clock())
        if err is not None:
            raise err
        return resp


class PaceGate:
    """The asyncio side of a client's :class:`~connector.cxone.pacing.Pacer`.

    Waiters queue in FIFO order (one lock); the head sleeps until the pacer lets it go and
    recomputes only when the pacer changed meanwhile (a 429 closed the gate, another request
    went), so an injected sleep that does not really wait never spins.
    """

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self._lock = asyncio.Lock()

    async def acquire(self, sleep: Sleep, *, probe: float | None = None) -> float:
        """Wait for the request's turn and take it.

        Args:
            sleep: how to wait.
            probe: see :meth:`Pacer.delay`; the probe skips the queue (it already waited).

        Returns:
            The send time, for :meth:`Pacer.succeeded` / :meth:`Pacer.throttled`.
        """
        if probe is not None:
            return await self._wait(sleep, probe)
        async with self._lock:
            return await self._wait(sleep, None)

    async def _wait(self, sleep: Sleep, probe: float | None) -> float:
        while True:
            version = self.pacer.version
            delay = self.pacer.delay(probe=probe)
            if delay <= 0:
                break
            await sleep(delay)
            if self.pacer.version == version:
                break
        return self.pacer.take(probe=probe)


#: ``prepare(attempt) -> (extra headers, JSON body)`` of one attempt.
Prepare = Callable[[int], Awaitable[tuple[Mapping[str, str], Any]]]


async def request_with_retries(
    http: Http,
    method: str,
    url: str | Callable[[], Awaitable[str]],
    *,
    tokens: TokenCache | None,
    max_attempts: int,
    delays: Iterator[float],
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
    what: str = "request",
    endpoint: str | None = None,
    pacer: PaceGate | None = None,
    prepare: Prepare | None = None,
) -> Response:
    """Send a request until it succeeds, fails fatally, or ``max_attempts`` are used.

    Every attempt asks for JSON (``Accept: application/json``, unless ``headers`` names
    another). A 401 invalidates the token and retries once at once; a second 401 is fatal. With a
    ``pacer`` every attempt waits for its turn first, and a 429 closes the pacer's gate for
    all requests of the client (see :mod:`connector.cxone.pacing`).

    Args:
        url: the URL, or an async callable giving it (discovered endpoints).
        tokens: the profile's token cache; None for unauthenticated calls.
        delays: backoff delays for retriable failures without ``Retry-After``.
        endpoint: the metrics ``endpoint`` label of this call (``None``: not counted).
        pacer: the client's pacing gate; None sends at once.
        prepare: called with the attempt number (1 for the first) before every attempt, after
            the pacer let it through; returns the attempt's extra headers and JSON body (a
            submission re-checks its numbers against the DNC table there). Whatever it
            raises ends the request.

    Raises:
        AuthError: credentials refused after one refresh.
        HTTPStatusError: a fatal status (other 4xx), with status and truncated body.
        ProtocolError: a fatal answer from the token or discovery endpoints.
        RetriesExhaustedError: retriable failures for every attempt.
    """
    refreshed = False
    attempt = 0
    probe: float | None = None
    while True:
        attempt += 1
        sent_at: float | None = None
        try:
            if pacer is not None:
                sent_at = await pacer.acquire(sleep, probe=probe)
                probe = None
            body = json
            full_headers = {**ACCEPT_JSON, **(headers or {})}
            if prepare is not None:
                extra, body = await prepare(attempt)
                full_headers.update(extra)
            token = None
            if tokens is not None:
                token = await tokens.get()
                full_headers["Authorization"] = f"Bearer {token}"
            target = url if isinstance(url, str) else await url()
            resp = http.check(await http.send(method, target, headers=full_headers, json=body, params=params,
                                              endpoint=endpoint))
            if pacer is not None and sent_at is not None:
                pacer.pacer.succeeded(sent_at)
            return resp
        except CXoneError as err:
            if isinstance(err, AuthError) and err.status == 401 and tokens is not None and not refreshed:
                refreshed = True
                if token is not None:
                    tokens.invalidate(token)
                log.info("%s: 401, refreshing the token once", what)
                attempt -= 1  # the refresh is not a failed attempt
                http.record_retry(endpoint, "unauthorized")
                continue
            if not err.retriable:
                raise
            delay = retry_delay(err, delays)
            queued = False
            if pacer is not None and sent_at is not None and isinstance(err, RateLimitedError):
                # Close the gate for every request of the client; only the request that opened
                # this 429 episode waits on its own (the probe), the others queue at the gate.
                probe = pacer.pacer.throttled(sent_at, delay)
                queued = probe is None
            if attempt >= max_attempts:
                raise RetriesExhaustedError(attempt, err) from err
            http.record_retry(endpoint, retry_reason(err))
            log.info("%s failed (attempt %d/%d, %s); retrying in %.2fs",
                     what, attempt, max_attempts, type(err).__name__, delay)
            if not queued:
                await sleep(delay)
