"""The v2 (tutorial) profile: client-credentials token, JSON bulk insert, job status, WebSocket URL."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from connector.config import CXoneSettings
from connector.core.models import Batch
from connector.cxone.auth import TokenCache, v2_token_fetcher
from connector.cxone.client import NothingToSend, Retrying, SendCheck, SubmittedJob
from connector.cxone.http import ACCEPT_JSON, Http, Prepare, make_session, request_with_retries
from connector.cxone.protocol import JobUpdate, v2_bulk_body, v2_job_id, v2_job_update

if TYPE_CHECKING:
    from connector.ops.metrics import Metrics

log = logging.getLogger(__name__)


class V2Client:
    """Bulk inserts and job status on the v2 API.

    Args:
        settings: ``base_url``, ``ws_url`` (derived from ``base_url`` when empty),
            ``client_id``/``client_secret``/``scopes``, ``contact_list_id``.
        retrying: the retry policy.
        session: a shared session, or None to own one.
        metrics: where requests, retries and token fetches are counted (``None``: nowhere).
    """

    profile = "v2"

    def __init__(self, settings: CXoneSettings, retrying: Retrying, *,
                 session: aiohttp.ClientSession | None = None, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._retrying = retrying
        self._own_session = session is None
        self._session = session if session is not None else make_session(settings)
        self._http = Http(self._session, metrics=metrics)
        self._base = settings.base_url.rstrip("/")
        self.list_id = settings.contact_list_id
        self.tokens = TokenCache(v2_token_fetcher(self._http, settings, delays=retrying.delays,
                                                  sleep=retrying.sleep), metrics=metrics)

    async def _call(self, method: str, path: str, *, what: str, endpoint: str,
                    headers: Mapping[str, str] | None = None, json: object = None,
                    prepare: Prepare | None = None) -> object:
        resp = await request_with_retries(
            self._http, method, self._base + path, tokens=self.tokens, headers=headers, json=json,
            max_attempts=self._retrying.max_attempts, delays=self._retrying.delays(),
            sleep=self._retrying.sleep, what=what, endpoint=endpoint, pacer=self._retrying.gate,
            prepare=prepare,
        )
        return resp.json()

    async def submit(self, batch: Batch, *, check: SendCheck | None = None) -> list[SubmittedJob]:
        """POST one bulk insert with ``Idempotency-Key`` from the batch sent.

        ``check`` is asked before every attempt (see :data:`connector.cxone.client.SendCheck`).

        Raises:
            HTTPStatusError: a fatal answer (e.g. 400 for a bad item), with status and body.
            RetriesExhaustedError: 429/5xx/I-O failures for every allowed attempt.
            ProtocolError: the 202 answer has no job id.
        """
        current = batch

        async def prepare(attempt: int) -> tuple[Mapping[str, str], Any]:
            nonlocal current
            if check is not None:
                checked = await check(current)
                if checked is None:
                    raise NothingToSend("every contact was removed by the send-time check")
                current = checked
            return {"Idempotency-Key": current.idempotency_key()}, v2_bulk_body(self.list_id, current.contacts)

        try:
            answer = await self._call("POST", "/api/v2/outbound/contactlistitems/bulkinsert",
                                      what="bulk insert", endpoint="bulk_insert", prepare=prepare)
        except NothingToSend:
            return []
        return [SubmittedJob(v2_job_id(answer), len(current.contacts))]

    async def job_status(self, job_id: str) -> JobUpdate:
        """GET the job's status.

        Raises:
            CXoneError: the request failed or the answer is malformed.
        """
        path = "/api/v2/outbound/jobs/" + urllib.parse.quote(job_id, safe="")
        return v2_job_update(await self._call("GET", path, what="job status", endpoint="job_status"))

    def push_url(self) -> str | None:
        """``ws_url`` or ``base_url`` with a ws scheme and ``/api/v2/events``."""
        if self._settings.ws_url:
            return self._settings.ws_url
        parts = urllib.parse.urlsplit(self._base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/api/v2/events", "", ""))

    async def push_headers(self) -> Mapping[str, str]:
        """A bearer token for the WebSocket handshake (which asks for JSON, like every request).

        Raises:
            CXoneError: the token could not be fetched.
        """
        return {**ACCEPT_JSON, "Authorization": f"Bearer {await self.tokens.get()}"}

    def invalidate_token(self, header_value: str) -> None:
        """Forget the token carried in ``header_value`` (a 401 on the handshake)."""
        self.tokens.invalidate(header_value.removeprefix("Bearer "))

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._own_session:
            await self._session.close()
