"""The call-lists profile (published CXone API): CSV uploads and upload-job polling, list
record counts, DNC-group records (checked record by record) and ``removeProspects``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from connector.config import CXoneSettings
from connector.core.models import Batch
from connector.cxone.auth import CallListsAuth
from connector.cxone.client import NothingToSend, Retrying, SendCheck, SubmittedJob
from connector.cxone.exceptions import ProtocolError
from connector.cxone.http import Http, Prepare, make_session, request_with_retries
from connector.cxone.protocol import (
    CALL_LISTS_MAX_RECORDS,
    JobUpdate,
    call_list_file_name,
    call_list_job_id,
    call_list_job_update,
    call_list_upload_body,
    chunked,
)
from connector.cxone.records import (
    DncGroupHit,
    DncRecordPage,
    DncRecordsResult,
    ListCounts,
    Operation,
    ProspectRemoval,
    dnc_phone,
    dnc_records_body,
    parse_dnc_page,
    parse_dnc_results,
    parse_dnc_search,
    parse_list_counts,
    parse_prospect_removal,
)
from connector.errors import ConfigError

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
                    resource: str = "lists/call-lists", prepare: Prepare | None = None) -> object:
        async def url() -> str:
            return await self.auth.api_endpoint() + self._url(path, resource)

        resp = await request_with_retries(
            self._http, method, url, tokens=self.tokens, json=json,
            max_attempts=self._retrying.max_attempts, delays=self._retrying.delays(),
            sleep=self._retrying.sleep, what=what, endpoint=endpoint, pacer=self._retrying.gate,
            prepare=prepare,
        )
        return resp.json()

    async def ensure_list(self) -> str:
        """The calling list id: ``cxone.call_list_id``, or the id of the list mapping named
        :data:`DEFAULT_LIST_NAME`, created when missing (the API returns the existing one).
        A created mapping maps ``cxone.time_zone_column`` as its ``timeZoneColumn``.

        Raises:
            CXoneError: the create call failed.
            ProtocolError: its answer carries no ``listId``.
        """
        if not self.list_id:
            async with self._list_lock:
                if not self.list_id:
                    params = {
                        "listName": DEFAULT_LIST_NAME, "externalIdColumn": "externalId",
                        "firstNameColumn": "firstName", "lastNameColumn": "lastName",
                    }
                    if self._settings.time_zone_column:
                        params["timeZoneColumn"] = self._settings.time_zone_column
                    query = urllib.parse.urlencode(params)
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

    async def submit(self, batch: Batch, *, check: SendCheck | None = None) -> list[SubmittedJob]:
        """Upload the batch as one or more CSV files (``max_records`` each); one job per file.

        The file name derives from the idempotency key of what is sent, so a replayed upload
        is recognised by CXone (and the simulator) as the same file. ``check`` is asked before
        every attempt of every file (see :data:`connector.cxone.client.SendCheck`); a file it
        empties is not uploaded.

        Raises:
            HTTPStatusError: a fatal answer (4xx), with status and body.
            RetriesExhaustedError: 429/5xx/I-O failures for every allowed attempt.
            ProtocolError: an answer without ``jobId``.
        """
        await self.ensure_list()
        chunks = list(chunked(batch.contacts, self.max_records))
        path = urllib.parse.quote(self.list_id, safe="") + "/upload"
        jobs: list[SubmittedJob] = []
        for index, chunk in enumerate(chunks):
            part = dataclasses.replace(batch, contacts=list(chunk))
            try:
                part, answer = await self._upload(path, part, index, len(chunks), check)
            except NothingToSend:
                continue
            jobs.append(SubmittedJob(call_list_job_id(answer), len(part.contacts)))
        return jobs

    async def _upload(self, path: str, part: Batch, index: int, total: int,
                      check: SendCheck | None) -> tuple[Batch, object]:
        s = self._settings

        async def prepare(attempt: int) -> tuple[Mapping[str, str], Any]:
            nonlocal part
            if check is not None:
                checked = await check(part)
                if checked is None:
                    raise NothingToSend("every contact of the file was removed by the send-time check")
                part = checked
            name = call_list_file_name(part.idempotency_key(), index, total)
            return {}, call_list_upload_body(part.contacts, name, skill_id=s.skill_id,
                                             time_zone_column=s.time_zone_column,
                                             default_time_zone=s.default_time_zone)

        answer = await self._call("POST", path, what="call-list upload", endpoint="upload", prepare=prepare)
        return part, answer

    async def add_dnc_records(self, group_id: str, numbers: list[str], *,
                              raise_on_failure: bool = True) -> DncRecordsResult:
        """Add E.164 numbers to a DNC group (``POST /dnc-groups/{groupId}/records``); skills
        scrubbed by the group never dial them. Adding a number already there is harmless.

        Numbers are sent as ``cxone.dnc_phone_format`` says (digits as an integer by
        default). CXone answers per record inside a 200; a number is done only when its
        record says ``success: true``.

        Args:
            raise_on_failure: raise :class:`DncRecordsError` when any record failed (the
                default, so a caller that ignores the result never counts a failure as
                done); False returns the result with its failures.

        Returns:
            One result per distinct number: ``result.succeeded`` (numbers),
            ``result.failed`` (each with ``number``, masked ``error``, ``retriable``) and
            each record's ``formatted_phone`` as CXone stored it.

        Raises:
            DncRecordsError: some records failed (with ``raise_on_failure``); retriable
                when one of the failures is.
            HTTPStatusError: a fatal answer (4xx), with status and body.
            RetriesExhaustedError: 429/5xx/I-O failures for every allowed attempt.
            ProtocolError: an answer without ``recordResults``.
        """
        return await self._dnc_records("POST", "add", group_id, numbers, raise_on_failure)

    async def remove_dnc_records(self, group_id: str, numbers: list[str], *,
                                 raise_on_failure: bool = True) -> DncRecordsResult:
        """Expire numbers in a DNC group (``DELETE /dnc-groups/{groupId}/records``), record by
        record as :meth:`add_dnc_records` (same arguments, result and errors).

        Raises:
            DncRecordsError: some records failed (with ``raise_on_failure``).
            HTTPStatusError: a fatal answer (4xx), with status and body.
            RetriesExhaustedError: 429/5xx/I-O failures for every allowed attempt.
            ProtocolError: an answer without ``recordResults``.
        """
        return await self._dnc_records("DELETE", "expire", group_id, numbers, raise_on_failure)

    async def _dnc_records(self, method: str, operation: Operation, group_id: str, numbers: list[str],
                           raise_on_failure: bool) -> DncRecordsResult:
        body, sent, local = dnc_records_body(numbers, self._settings.dnc_phone_format)
        if sent:
            answer = await self._call(method, urllib.parse.quote(group_id, safe="") + "/records",
                                      what="DNC group records", endpoint="dnc_records", json=body,
                                      resource="dnc-groups")
            result = parse_dnc_results(answer, operation, group_id, sent, local)
        else:
            result = DncRecordsResult(operation, group_id, tuple(local))
        if not result.ok:
            log.warning("DNC group %s %s: %d of %d record(s) failed", group_id, operation,
                        len(result.failed), len(result.records))
            if raise_on_failure:
                result.raise_for_failures()
        return result

    async def list_dnc_records(self, group_id: str, *, top: int = 100, skip: int = 0) -> DncRecordPage:
        """One page of a DNC group's records (``GET /dnc-groups/{groupId}/records?top=&skip=``).

        Raises:
            CXoneError: the request failed.
            ProtocolError: the answer carries no ``dncRecords``.
        """
        query = urllib.parse.urlencode({"top": top, "skip": skip})
        answer = await self._call("GET", f"{urllib.parse.quote(group_id, safe='')}/records?{query}",
                                  what="DNC group records", endpoint="dnc_records", resource="dnc-groups")
        return parse_dnc_page(answer)

    async def find_dnc_groups(self, number: str) -> tuple[DncGroupHit, ...]:
        """The DNC groups that hold an E.164 number (``POST /dnc-groups/search?phoneNumber=``).

        Raises:
            ValueError: ``number`` is not E.164.
            CXoneError: the request failed.
            ProtocolError: the answer carries no ``searchResults``.
        """
        query = urllib.parse.urlencode({"phoneNumber": dnc_phone(number, self._settings.dnc_phone_format)})
        answer = await self._call("POST", "search?" + query, what="DNC search", endpoint="dnc_records",
                                  resource="dnc-groups")
        return parse_dnc_search(answer)

    async def list_counts(self, list_id: str | None = None) -> ListCounts:
        """The calling list's record counts (``GET /lists/call-lists/{listId}``): read them after
        a job completed to learn how many rows CXone rejected (``invalid_records``).

        Args:
            list_id: the list; None is this client's list (created when needed).

        Raises:
            CXoneError: the request failed.
            ProtocolError: the answer lacks a count.
        """
        target = list_id or await self.ensure_list()
        answer = await self._call("GET", urllib.parse.quote(target, safe=""), what="call list counts",
                                  endpoint="list_counts")
        return parse_list_counts(answer, target)

    async def remove_prospects(self, external_ids: Sequence[str]) -> ProspectRemoval:
        """Remove records by external id (the CRM contact id) from the Proactive XS source
        ``cxone.prospect_source_name`` (default :data:`DEFAULT_LIST_NAME`):
        ``DELETE /lists/call-lists/{sourceName}/removeProspects``.

        Returns:
            ``removed`` ids and ``failed`` ``{externalId: resultCode}``; an id CXone did not
            answer for is failed (``NoResult``). Check ``result.ok``: a failure is not removed.

        Raises:
            ConfigError: ``cxone.remove_prospects`` is off.
            HTTPStatusError: a fatal answer (4xx, e.g. an unknown source), with status and body.
            RetriesExhaustedError: 429/5xx/I-O failures for every allowed attempt.
            ProtocolError: an answer with neither result array.
        """
        if not self._settings.remove_prospects:
            raise ConfigError([("cxone.remove_prospects", "is off; removeProspects is not allowed")])
        ids = list(dict.fromkeys(external_ids))
        if not ids:
            return ProspectRemoval(())
        source = self._settings.prospect_source_name or DEFAULT_LIST_NAME
        body = {"prospectsToRemove": [{"externalId": e} for e in ids]}
        answer = await self._call("DELETE", urllib.parse.quote(source, safe="") + "/removeProspects",
                                  what="removeProspects", endpoint="remove_prospects", json=body)
        return parse_prospect_removal(answer, ids)

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
