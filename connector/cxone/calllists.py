"""The call-lists profile (published CXone API): CSV uploads and upload-job polling."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

import aiohttp

from connector.config import CXoneSettings
from connector.core.models import Batch
from connector.cxone.auth import CallListsAuth
from connector.cxone.client import Retrying, SubmittedJob
from connector.cxone.exceptions import ProtocolError
from connector.cxone.http import Http, make_session, request_with_retries
from connector.cxone.protocol import (
    CALL_LISTS_MAX_RECORDS,
    JobUpdate,
    call_list_job_id,
    call_list_job_update,
    call_list_upload_bodies,
)

if TYPE_CHECKING:
    from connector.ops.metrics import Metrics

log = logging.getLogger(__name__)

#: The list mapping used when ``cxone.call_list_id`` is empty.
DEFAULT_LIST_NAME = "cxone-connector"


class CallListsClient:
    """Uploads to one calling list and polls upload jobs.

    Args:
        settings: ``auth_base_url``, credentials, ``api_version``, ``call_list_id``, ``skill_id``.
        retrying: the retry policy.
        session: a shared session, or None to own one.
        max_records: records per upload file (the API's limit is 500,000).
        metrics: where requests, retries and token fetches are counted (``None``: nowhere).
    """

    profile = "call-lists"

    def __init__(self, settings: CXoneSettings, retrying: Retrying, *,
                 session: aiohttp.ClientSession | None = None,
                 max_records: int = CALL_LISTS_MAX_RECORDS, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._retrying = retrying
        self._own_session = session is None
        self._session = session if session is not None else make_session(settings)
        self._http = Http(self._session, metrics=metrics)
        self.auth = CallListsAuth(self._http, settings, delays=retrying.delays, sleep=retrying.sleep)
        self.tokens = self.auth.tokens
        self.list_id = settings.call_list_id
        self.max_records = max_records
        self._list_lock = asyncio.Lock()

    def _url(self, path: str, resource: str = "lists/call-lists") -> str:
        base = f"/inContactAPI/services/{self._settings.api_version}/{resource}"
        return base + ("" if not path or path.startswith("?") else "/") + path

    async def _call(self, method: str, path: str, *, what: str, endpoint: str, json: object = None,
                    resource: str = "lists/call-lists") -> object:
        async def url() -> str:
            return await self.auth.api_endpoint() + self._url(path, resource)

        resp = await request_with_retries(
            self._http, method, url, tokens=self.tokens, json=json,
            max_attempts=self._retrying.max_attempts, delays=self._retrying.delays(),
            sleep=self._retrying.sleep, what=what, endpoint=endpoint, pacer=self._retrying.gate,
        )
        return resp.json()

    async def ensure_list(self) -> str:
        """The calling list id: ``cxone.call_list_id``, or the id of the list mapping named
        :data:`DEFAULT_LIST_NAME`, created when missing (the API returns the existing one).

        Raises:
            CXoneError: the create call failed.
            ProtocolError: its answer carries no ``listId``.
        """
        if not self.list_id:
            async with self._list_lock:
                if not self.list_id:
                    query = urllib.parse.urlencode({
                        "listName": DEFAULT_LIST_NAME, "externalIdColumn": "externalId",
                        "firstNameColumn": "firstName", "lastNameColumn": "lastName",
                    })
                    body = {"destinationMappings": [
                        {"fieldName": "PhoneNumber", "fieldValue": "phone"},
                        {"fieldName": "Email", "fieldValue": "email"},
                    ]}
                    answer = await self._call("POST", "?" + query, what="create call list",
                                              endpoint="create_list", json=body)
                    list_id = answer.get("listId") if isinstance(answer, dict) else None
                    if not isinstance(list_id, str | int) or not str(list_id):
                        raise ProtocolError("create call list answer carries no listId")
                    self.list_id = str(list_id)
        return self.list_id

    async def submit(self, batch: Batch) -> list[SubmittedJob]:
        """Upload the batch as one or more CSV files (``max_records`` each); one job per file.

        The file name derives from the batch's idempotency key, so a replayed upload is
        recognised by CXone (and the simulator) as the same file.

        Raises:
            HTTPStatusError: a fatal answer (4xx), with status and body.
            RetriesExhaustedError: 429/5xx/I-O failures for every allowed attempt.
            ProtocolError: an answer without ``jobId``.
        """
        await self.ensure_list()
        bodies = call_list_upload_bodies(batch.contacts, batch.idempotency_key(),
                                         skill_id=self._settings.skill_id, max_records=self.max_records)
        jobs: list[SubmittedJob] = []
        path = urllib.parse.quote(self.list_id, safe="") + "/upload"
        for index, body in enumerate(bodies):
            count = min(self.max_records, len(batch.contacts) - index * self.max_records)
            answer = await self._call("POST", path, what="call-list upload", endpoint="upload",
                                      json=body)
            jobs.append(SubmittedJob(call_list_job_id(answer), count))
        return jobs

    async def add_dnc_records(self, group_id: str, numbers: list[str]) -> None:
        """Add E.164 numbers to a DNC group (``POST /dnc-groups/{groupId}/records``); skills
        scrubbed by the group never dial them. Adding a number already there is harmless.

        Raises:
            HTTPStatusError: a fatal answer (4xx), with status and body.
            RetriesExhaustedError: 429/5xx/I-O failures for every allowed attempt.
        """
        await self._dnc_records("POST", group_id, numbers)

    async def remove_dnc_records(self, group_id: str, numbers: list[str]) -> None:
        """Expire numbers in a DNC group (``DELETE /dnc-groups/{groupId}/records``).

        Raises:
            HTTPStatusError: a fatal answer (4xx), with status and body.
            RetriesExhaustedError: 429/5xx/I-O failures for every allowed attempt.
        """
        await self._dnc_records("DELETE", group_id, numbers)

    async def _dnc_records(self, method: str, group_id: str, numbers: list[str]) -> None:
        body = {"dncGroupRecords": [{"phoneNumber": number} for number in numbers]}
        await self._call(method, urllib.parse.quote(group_id, safe="") + "/records", what="DNC group records",
                         endpoint="dnc_records", json=body, resource="dnc-groups")

    async def job_status(self, job_id: str) -> JobUpdate:
        """GET the upload job.

        Raises:
            CXoneError: the request failed or the answer does not list the job.
        """
        answer = await self._call("GET", "jobs/" + urllib.parse.quote(job_id, safe=""), what="upload job",
                                  endpoint="job_status")
        return call_list_job_update(answer, job_id)

    def push_url(self) -> str | None:
        """None: upload jobs have no documented push channel."""
        return None

    async def push_headers(self) -> Mapping[str, str]:
        """No push channel; empty."""
        return {}

    def invalidate_token(self, header_value: str) -> None:
        """Forget the token carried in ``header_value``."""
        self.tokens.invalidate(header_value.removeprefix("Bearer "))

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._own_session:
            await self._session.close()
