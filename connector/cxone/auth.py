"""Access tokens for both profiles, cached and refreshed before they expire.

:class:`TokenCache` holds one token; it is refreshed ``refresh_margin_s`` (60 s, or half the
lifetime for short-lived tokens) before expiry, or after :meth:`TokenCache.invalidate`
(a 401). Concurrent callers share one refresh: they queue on one lock and re-check.

``v2_token_fetcher`` does the client-credentials grant with scopes. :class:`CallListsAuth`
gets a token either by OpenID discovery and the access-key password grant with HTTP Basic
client auth (``cxone.auth_method = "password"``), or by the access-key token call
(``"access_key"``: ``POST /authentication/v1/token/access-key`` with JSON), then discovers
the API from the token's ``tenantId`` claim. Every token call asks for JSON. Tokens and
secrets are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from connector.config import CXoneSettings, Secret
from connector.cxone.backoff import retry_delay
from connector.cxone.exceptions import AuthError, CXoneError, ProtocolError, RetriesExhaustedError
from connector.cxone.http import ACCEPT_JSON, Http, request_with_retries, retry_reason

if TYPE_CHECKING:
    from connector.ops.metrics import Metrics

from connector.ops.logs import register_secret

log = logging.getLogger(__name__)

#: ``(access_token, expires_in_seconds)``.
Fetch = Callable[[], Awaitable[tuple[str, float]]]
FORM = {"Content-Type": "application/x-www-form-urlencoded", **ACCEPT_JSON}
#: The access-key token call, below ``auth_base_url`` unless ``access_key_token_url`` says otherwise.
ACCESS_KEY_PATH = "/authentication/v1/token/access-key"


class TokenCache:
    """One cached access token.

    Args:
        fetch: gets a fresh ``(token, expires_in)``; its errors propagate to :meth:`get`.
        refresh_margin_s: refresh this long before expiry (capped at half the lifetime).
        clock: monotonic seconds.
        metrics: counts fetches by outcome (``cxone_token_refreshes``); ``None``: not counted.
    """

    def __init__(self, fetch: Fetch, *, refresh_margin_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, metrics: Metrics | None = None) -> None:
        self._fetch = fetch
        self._refresh_ok = metrics.cxone_token_refreshes.labels(outcome="ok") if metrics else None
        self._refresh_error = metrics.cxone_token_refreshes.labels(outcome="error") if metrics else None
        self._margin = refresh_margin_s
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def _valid(self) -> bool:
        return self._token is not None and self._clock() < self._refresh_at

    async def get(self) -> str:
        """A valid token, fetching one when needed (one fetch for all concurrent callers).

        Raises:
            CXoneError: the fetch failed (see the fetcher).
        """
        if self._valid():
            assert self._token is not None  # noqa: S101 - narrowed by _valid
            return self._token
        async with self._lock:
            if not self._valid():  # another caller may have refreshed while we waited
                try:
                    token, expires_in = await self._fetch()
                except Exception:
                    if self._refresh_error is not None:
                        self._refresh_error.inc()
                    raise
                if self._refresh_ok is not None:
                    self._refresh_ok.inc()
                margin = min(self._margin, max(expires_in, 0.0) / 2)
                self._token, self._refresh_at = token, self._clock() + expires_in - margin
                register_secret(token, rotating=True)  # never in a log line or an error text
                self.refreshes += 1
                log.debug("access token refreshed; valid for %.0fs", expires_in)
            assert self._token is not None  # noqa: S101 - just set
            return self._token

    def invalidate(self, stale: str) -> None:
        """Forget ``stale`` (it got a 401) unless a newer token already replaced it."""
        if self._token == stale:
            self._token = None


def basic_auth(client_id: str, secret: Secret | None) -> str:
    """An HTTP Basic ``Authorization`` value for the client credentials.

    Raises:
        AuthError: the client secret is not configured.
    """
    raw = f"{client_id}:{_secret(secret, 'client_secret')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _token_answer(body: Any) -> tuple[str, float]:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise ProtocolError("token answer carries no access_token")
    expires_in = body.get("expires_in", 3600)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise ProtocolError("token answer has a non-numeric expires_in")
    return body["access_token"], float(expires_in)


def _secret(value: Secret | None, key: str) -> str:
    if value is None or not value.get():
        raise AuthError(401, f"cxone.{key} is not configured")
    return value.get()


def v2_token_fetcher(
    http: Http, settings: CXoneSettings, *, delays: Callable[[], Iterator[float]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Fetch:
    """The client-credentials grant of the v2 profile as a :data:`Fetch`."""
    url = settings.base_url.rstrip("/") + "/api/v2/oauth2/token"

    async def fetch() -> tuple[str, float]:
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": _secret(settings.client_secret, "client_secret"),
            "scope": settings.scopes,
        })
        resp = await _post_token(http, url, settings, delays(), sleep, form=form)
        return _token_answer(resp)

    return fetch


async def _post_token(
    http: Http, url: str, settings: CXoneSettings, delays: Iterator[float],
    sleep: Callable[[float], Awaitable[None]], *, form: str | None = None, json: Any = None,
    basic: str | None = None,
) -> Any:
    """POST a token request (a ``form``, or a ``json`` body) with retries on 429/5xx/I-O.

    Raises:
        AuthError: a 400, 401 or 403 answer (its body is never kept: it may echo secrets).
        RetriesExhaustedError: retriable failures for every allowed attempt.
        CXoneError: any other failure (see :meth:`Http.check`).
    """
    attempt = 0
    base = FORM if json is None else ACCEPT_JSON
    while True:
        attempt += 1
        try:
            headers = base if basic is None else {**base, "Authorization": basic}
            resp = await http.send("POST", url, headers=headers, data=form, json=json, endpoint="token")
            if resp.status in (400, 401, 403):
                # never echo the body: some servers reflect the submitted credentials
                raise AuthError(resp.status, "token request refused")
            return http.check(resp).json()
        except CXoneError as err:
            if not err.retriable:
                raise
            if attempt >= settings.max_request_attempts:
                raise RetriesExhaustedError(attempt, err) from err
            http.record_retry("token", retry_reason(err))
            await sleep(retry_delay(err, delays))


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (we only read routing hints from our own token).

    Raises:
        ProtocolError: not a JWT with a JSON object payload.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ProtocolError("access token is not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except ValueError:
        raise ProtocolError("access token payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ProtocolError("access token payload is not a JSON object")
    return claims


class CallListsAuth:
    """Token and API endpoint for the call-lists profile.

    Args:
        http: the shared HTTP sender.
        settings: ``auth_base_url``, ``auth_method`` (and ``access_key_token_url``),
            ``client_id``/``client_secret`` (password grant), ``access_key_id``/
            ``access_key_secret``, optional ``api_base_url``.
        delays: a fresh backoff iterator per call.
    """

    def __init__(self, http: Http, settings: CXoneSettings, *, delays: Callable[[], Iterator[float]],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._http = http
        self._settings = settings
        self._delays = delays
        self._sleep = sleep
        self._token_endpoint: str | None = None
        self._api_endpoint: str | None = settings.api_base_url.rstrip("/") or None
        self._discovery_lock = asyncio.Lock()
        self.tokens = TokenCache(self._fetch, metrics=http.metrics)

    async def _discover_token_endpoint(self) -> str:
        if self._token_endpoint is None:
            base = self._settings.auth_base_url.rstrip("/")
            resp = await request_with_retries(
                self._http, "GET", base + "/.well-known/openid-configuration", tokens=None,
                max_attempts=self._settings.max_request_attempts, delays=self._delays(),
                sleep=self._sleep, what="openid discovery", endpoint="discovery",
            )
            body = resp.json()
            endpoint = body.get("token_endpoint") if isinstance(body, dict) else None
            if not isinstance(endpoint, str) or not endpoint:
                raise ProtocolError("openid-configuration has no token_endpoint")
            self._token_endpoint = endpoint
        return self._token_endpoint

    async def _fetch(self) -> tuple[str, float]:
        s = self._settings
        if s.auth_method == "access_key":
            url = s.access_key_token_url or s.auth_base_url.rstrip("/") + ACCESS_KEY_PATH
            key = {"accessKeyId": s.access_key_id,
                   "accessKeySecret": _secret(s.access_key_secret, "access_key_secret")}
            body = await _post_token(self._http, url, s, self._delays(), self._sleep, json=key)
            return _token_answer(body)
        endpoint = await self._discover_token_endpoint()
        # urlencode escapes "=" (and "+", "/") inside access keys, as CXone requires
        form = urllib.parse.urlencode({
            "grant_type": "password",
            "username": s.access_key_id,
            "password": _secret(s.access_key_secret, "access_key_secret"),
        })
        body = await _post_token(self._http, endpoint, s, self._delays(), self._sleep, form=form,
                                 basic=basic_auth(s.client_id, s.client_secret))
        return _token_answer(body)

    async def api_endpoint(self) -> str:
        """The tenant's admin API base (``api_base_url``, or discovered from ``tenantId``).

        Raises:
            ProtocolError: the token has no ``tenantId`` or discovery has no ``api_endpoint``.
            CXoneError: token or discovery requests failed.
        """
        if self._api_endpoint is not None:
            return self._api_endpoint
        async with self._discovery_lock:
            if self._api_endpoint is None:
                tenant = jwt_claims(await self.tokens.get()).get("tenantId")
                if not isinstance(tenant, str) or not tenant:
                    raise ProtocolError("access token has no tenantId claim")
                base = self._settings.auth_base_url.rstrip("/")
                resp = await request_with_retries(
                    self._http, "GET", base + "/.well-known/cxone-configuration", tokens=None,
                    params={"tenantId": tenant}, max_attempts=self._settings.max_request_attempts,
                    delays=self._delays(), sleep=self._sleep, what="api discovery", endpoint="discovery",
                )
                body = resp.json()
                endpoint = body.get("api_endpoint") if isinstance(body, dict) else None
                if not isinstance(endpoint, str) or not endpoint:
                    raise ProtocolError("cxone-configuration has no api_endpoint")
                self._api_endpoint = endpoint.rstrip("/")
            return self._api_endpoint
