"""The simulator's state, free of I/O: tokens, lists, jobs, idempotency, counters, DNC groups
(:mod:`~connector.simulator.dncstate`) and webhooks (:mod:`~connector.simulator.hooklog`).

Time comes from an injected ``clock`` (epoch seconds), so tests drive job progress and
token expiry by hand. Jobs advance only when :meth:`SimState.tick` is called; the server
calls it every few milliseconds and fans the returned events out to the event sockets.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from connector.simulator.dncstate import DncStore
from connector.simulator.exceptions import ApiError
from connector.simulator.hooklog import WebhookLog

Profile = Literal["v2", "call-lists"]
JobStatus = Literal["QUEUED", "IN_PROGRESS", "COMPLETED", "FAILED", "ABORTED"]
TERMINAL: frozenset[str] = frozenset({"COMPLETED", "FAILED", "ABORTED"})
#: FAILED and ABORTED jobs stop at this fraction of their items.
BAD_OUTCOME_STOP = 0.5


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``...Z``); None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class TokenInfo:
    """An issued access token."""

    profile: Profile
    client_id: str
    scopes: frozenset[str]
    issued_at: float
    expires_at: float
    tenant_id: str | None = None


@dataclass
class ContactList:
    """A list: a v2 contactListId (created on first insert) or a call-lists mapping."""

    list_id: str
    profile: Profile
    name: str
    created_at: float
    #: Upsert key: phone number (E.164 for v2, digits for call-lists). Valid records only.
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: call-lists: records CXone kept but rejected (invalid, never dialled), same key.
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    external_id_column: str = ""
    phone_column: str = ""
    mappings: list[dict[str, str]] = field(default_factory=list)
    #: call-lists: the create call's known ``...Column`` parameters (``timeZoneColumn``, ...).
    column_mappings: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON view without the contacts."""
        out: dict[str, Any] = {"listId": self.list_id, "profile": self.profile, "name": self.name,
                               "contactCount": len(self.contacts), "createdAt": iso(self.created_at)}
        if self.profile == "call-lists":
            out.update(externalIdColumn=self.external_id_column, phoneColumn=self.phone_column,
                       destinationMappings=self.mappings, columnMappings=self.column_mappings,
                       **self.counts())
        return out

    def counts(self) -> dict[str, int]:
        """``totalRecords``, ``validRecords`` and ``invalidRecords``, as CXone counts them."""
        valid, invalid = len(self.contacts), len(self.rejected)
        return {"totalRecords": valid + invalid, "validRecords": valid, "invalidRecords": invalid}

    def land(self, item: dict[str, Any]) -> None:
        """Upsert one record of a completed job; an item with ``valid: False`` is rejected."""
        phone = str(item["phoneNumber"])
        keep, drop = (self.rejected, self.contacts) if item.get("valid") is False else (
            self.contacts, self.rejected)
        drop.pop(phone, None)
        keep[phone] = item

    def remove_external_ids(self, external_ids: set[str]) -> set[str]:
        """Remove every record (valid or rejected) with one of ``external_ids``; returns those found."""
        found: set[str] = set()
        for records in (self.contacts, self.rejected):
            for phone in [p for p, c in records.items() if str(c.get("externalId")) in external_ids]:
                found.add(str(records.pop(phone)["externalId"]))
        return found


@dataclass
class Job:
    """An asynchronous insert or upload job."""

    job_id: str
    profile: Profile
    list_id: str
    item_count: int
    #: The terminal status this job will reach (decided when it was created).
    outcome: JobStatus
    created_at: float
    #: Contacts to land, each keyed by its ``phoneNumber``; emptied once the job ends.
    items: list[dict[str, Any]] = field(default_factory=list, repr=False)
    status: JobStatus = "QUEUED"
    processed: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    idempotency_key: str | None = None
    file_name: str | None = None
    force_overwrite: bool = False
    failure_reason: str | None = None
    cancelled: bool = False
    #: Records this job adds to the tenant (phones not yet in its list when created).
    new_records: int = 0
    #: Last progress reported in an event, so each change is sent once.
    reported_progress: int = -1

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def target(self) -> float:
        """Items processed when the job ends."""
        return self.item_count if self.outcome == "COMPLETED" else self.item_count * BAD_OUTCOME_STOP

    @property
    def progress(self) -> int:
        """Whole percent of the items processed."""
        if self.status == "COMPLETED":
            return 100
        return min(100, int(self.processed * 100 // max(1, self.item_count)))

    def to_json(self) -> dict[str, Any]:
        """The inspection view (profile-neutral)."""
        return {
            "jobId": self.job_id, "profile": self.profile, "listId": self.list_id, "status": self.status,
            "progress": self.progress, "itemCount": self.item_count, "processedCount": int(self.processed),
            "createdAt": iso(self.created_at), "startedAt": iso(self.started_at),
            "completedAt": iso(self.completed_at), "idempotencyKey": self.idempotency_key,
            "fileName": self.file_name, "failureReason": self.failure_reason,
        }


@dataclass(frozen=True)
class JobEvent:
    """A job transition, as the v2 event stream sends it."""

    job_id: str
    status: JobStatus
    progress: int
    timestamp: float
    list_id: str
    item_count: int
    profile: Profile

    def to_json(self) -> dict[str, Any]:
        """The tutorial's event frame."""
        return {
            "eventType": "outbound.contactlistitems.bulkinsert",
            "timestamp": iso(self.timestamp),
            "data": {"jobId": self.job_id, "status": self.status, "progress": self.progress,
                     "contactListId": self.list_id, "itemCount": self.item_count},
        }


class SimState:
    """Everything the simulator remembers. Not thread-safe: one event loop owns it.

    Args:
        clock: epoch seconds now; injectable for tests.
        items_per_second: shared processing rate of running jobs.
        concurrency: jobs running at once; later ones wait QUEUED.
        tenant_limit: most active records (lists plus DNC groups) the tenant may hold.
        webhook_history: deliveries kept per webhook name.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        items_per_second: float = 50_000.0,
        concurrency: int = 4,
        tenant_limit: int = 1_000_000,
        webhook_history: int = 10_000,
    ) -> None:
        self.clock = clock
        self.items_per_second = items_per_second
        self.concurrency = concurrency
        self.tenant_limit = tenant_limit
        self.webhook_history = webhook_history
        self.reset()

    def reset(self) -> None:
        """Forget everything: tokens, lists, jobs, keys, counters, webhooks."""
        self.tokens: dict[str, TokenInfo] = {}
        self.lists: dict[str, ContactList] = {}
        self.jobs: dict[str, Job] = {}
        self._pending: list[Job] = []
        self._last_tick: float | None = None
        self._idempotency: dict[tuple[Profile, str], tuple[str, str]] = {}
        self.replays: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.dnc = DncStore()
        #: The webhook receiver's deliveries (``hooks.deliveries``, also ``webhooks``).
        self.hooks = WebhookLog(self.clock, self.webhook_history)
        self.webhooks = self.hooks.deliveries
        self._list_ids = itertools.count(1)

    # -- tokens ---------------------------------------------------------------------------

    def issue_token(
        self, token: str, profile: Profile, client_id: str, scopes: Iterable[str], lifetime_s: float,
        tenant_id: str | None = None,
    ) -> TokenInfo:
        """Remember a token handed out now, valid for ``lifetime_s``."""
        now = self.clock()
        info = TokenInfo(profile, client_id, frozenset(scopes), now, now + lifetime_s, tenant_id)
        self.tokens[token] = info
        self._forget_expired_tokens(now)
        return info

    def _forget_expired_tokens(self, now: float) -> None:
        # Expired tokens are kept for an hour so that using one says "expired", not "unknown".
        if len(self.tokens) > 1000:
            for tok in [t for t, i in self.tokens.items() if i.expires_at < now - 3600]:
                del self.tokens[tok]

    def authenticate(self, token: str | None, profile: Profile, scope: str | None = None) -> TokenInfo:
        """The token's info when it is valid for ``profile`` (and holds ``scope``).

        Raises:
            ApiError: 401 ``invalid_token`` (missing, unknown, other profile, expired) or
                403 ``insufficient_scope``.
        """
        if not token:
            raise ApiError(401, "invalid_token", "a bearer token is required")
        info = self.tokens.get(token)
        if info is None or info.profile != profile:
            raise ApiError(401, "invalid_token", "the bearer token is not valid")
        if self.clock() >= info.expires_at:
            raise ApiError(401, "invalid_token", "the bearer token has expired", reason="expired")
        if scope is not None and scope not in info.scopes:
            raise ApiError(403, "insufficient_scope", f"the token lacks the scope {scope!r}", scope=scope)
        return info

    # -- lists ----------------------------------------------------------------------------

    def ensure_list(self, list_id: str, profile: Profile) -> ContactList:
        """The list ``list_id``, created empty if new (v2 lists exist on first insert).

        Raises:
            ApiError: 409 ``list_conflict`` when the id belongs to the other profile.
        """
        lst = self.lists.get(list_id)
        if lst is None:
            lst = self.lists[list_id] = ContactList(list_id, profile, list_id, self.clock())
        elif lst.profile != profile:
            raise ApiError(409, "list_conflict", f"list {list_id} belongs to the {lst.profile} profile")
        return lst

    def call_list_named(self, name: str) -> ContactList | None:
        """The call list whose ``listName`` is ``name``, if any."""
        return next((lst for lst in self.lists.values() if lst.profile == "call-lists" and lst.name == name), None)

    def create_call_list(
        self, name: str, external_id_column: str, phone_column: str, mappings: list[dict[str, str]],
        column_mappings: Mapping[str, str] | None = None,
    ) -> tuple[ContactList, bool]:
        """Create a call-lists mapping; a known name returns the existing list (unchanged).

        Returns:
            The list and whether it was created now.
        """
        known = self.call_list_named(name)
        if known is not None:
            return known, False
        list_id = str(next(self._list_ids))
        while list_id in self.lists:
            list_id = str(next(self._list_ids))
        lst = ContactList(list_id, "call-lists", name, self.clock(), external_id_column=external_id_column,
                          phone_column=phone_column, mappings=mappings,
                          column_mappings=dict(column_mappings or {}))
        self.lists[list_id] = lst
        return lst, True

    # -- tenant limit ---------------------------------------------------------------------

    def active_records(self) -> int:
        """Records the tenant holds: every list's contacts plus every DNC group record."""
        return sum(len(lst.contacts) + len(lst.rejected) for lst in self.lists.values()) + self.dnc.count()

    def pending_records(self) -> int:
        """Records that jobs not finished yet will add (phones new to their list)."""
        return sum(j.new_records for j in self._pending)

    def _check_tenant_limit(self, new_records: int) -> None:
        total = self.active_records() + self.pending_records() + new_records
        if total > self.tenant_limit:
            raise ApiError(
                400, "tenant_record_limit",
                f"the tenant would hold {total} active records; at most {self.tenant_limit} are allowed",
                limit=self.tenant_limit, activeRecords=self.active_records(),
                pendingRecords=self.pending_records(),
            )

    # -- jobs -----------------------------------------------------------------------------

    def find_replay(self, profile: Profile, key: str, fingerprint: str) -> Job | None:
        """The job created earlier with idempotency ``key``, counting the replay.

        Raises:
            ApiError: 422 ``idempotency_key_reused`` when the key came with another body.
        """
        known = self._idempotency.get((profile, key))
        if known is None:
            return None
        job_id, first_fingerprint = known
        if fingerprint != first_fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "this idempotency key was used with a different request body")
        self.replays[profile] += 1
        return self.jobs[job_id]

    def create_job(
        self,
        profile: Profile,
        list_id: str,
        items: list[dict[str, Any]],
        outcome: JobStatus = "COMPLETED",
        *,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        file_name: str | None = None,
        force_overwrite: bool = False,
    ) -> Job:
        """Queue a job landing ``items`` (each with a ``phoneNumber``) in ``list_id``.

        Raises:
            ApiError: 400 ``tenant_record_limit`` when the new records would pass the
                tenant's limit.
        """
        lst = self.ensure_list(list_id, profile)
        phones = {str(i["phoneNumber"]) for i in items}
        held = len(lst.contacts) + len(lst.rejected)
        # An overwrite replaces the list: the tenant gains (or loses) the difference.
        new = len(phones) - held if force_overwrite else len(phones - lst.contacts.keys() - lst.rejected.keys())
        self._check_tenant_limit(max(0, new))
        job = Job(str(uuid.uuid4()), profile, list_id, len(items), outcome, self.clock(), items=items,
                  idempotency_key=idempotency_key, file_name=file_name, force_overwrite=force_overwrite,
                  new_records=max(0, new))
        if outcome == "FAILED":
            job.failure_reason = "simulated failure (faults.jobs)"
        elif outcome == "ABORTED":
            job.failure_reason = "simulated abort (faults.jobs)"
        self.jobs[job.job_id] = job
        self._pending.append(job)
        if idempotency_key is not None:
            self._idempotency[(profile, idempotency_key)] = (job.job_id, fingerprint)
        return job

    def cancel_job(self, job_id: str) -> tuple[Job, JobEvent]:
        """Abort a job that has not ended.

        Raises:
            ApiError: 404 ``job_not_found``; 409 ``job_finished`` when it already ended.
        """
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id}")
        if job.terminal:
            raise ApiError(409, "job_finished", f"job {job_id} already ended {job.status}")
        job.cancelled = True
        job.failure_reason = "cancelled by request"
        return job, self._finish(job, "ABORTED", self.clock())

    def _finish(self, job: Job, status: JobStatus, now: float) -> JobEvent:
        job.status = status
        job.completed_at = now
        if job in self._pending:
            self._pending.remove(job)
        if status == "COMPLETED":
            lst = self.ensure_list(job.list_id, job.profile)
            if job.force_overwrite:
                lst.contacts.clear()
                lst.rejected.clear()
            stamp = iso(now)
            for item in job.items:
                lst.land({**item, "jobId": job.job_id, "updatedAt": stamp})
        job.items = []
        return self._event(job, now)

    def _event(self, job: Job, now: float) -> JobEvent:
        job.reported_progress = job.progress
        return JobEvent(job.job_id, job.status, job.progress, now, job.list_id, job.item_count, job.profile)

    def tick(self, now: float | None = None) -> list[JobEvent]:
        """Advance running jobs to ``now``; return the events of what changed, in order.

        Every job reports IN_PROGRESS (with progress) at least once before its terminal
        event, and again each time its whole-percent progress changes.
        """
        now = self.clock() if now is None else now
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        running = self._pending[: self.concurrency]
        for job in running:
            if job.status == "QUEUED":
                job.status = "IN_PROGRESS"
                job.started_at = now
        # Share the budget evenly; what a nearly finished job leaves goes to the others.
        budget = dt * self.items_per_second
        by_remaining = sorted(running, key=lambda j: j.target - j.processed)
        for i, job in enumerate(by_remaining):
            take = min(budget / (len(by_remaining) - i), job.target - job.processed)
            job.processed += take
            budget -= take
        events: list[JobEvent] = []
        for job in running:
            done = job.processed >= job.target - 1e-9
            if job.reported_progress < 0 or (job.progress != job.reported_progress and not done):
                events.append(self._event(job, now))
            if done:
                events.append(self._finish(job, job.outcome, now))
        return events

    def current_event(self, job_id: str) -> JobEvent | None:
        """The job's state as an event, for a late subscriber (None when QUEUED or unknown)."""
        job = self.jobs.get(job_id)
        if job is None or job.status == "QUEUED":
            return None
        return JobEvent(job.job_id, job.status, job.progress, job.completed_at or self.clock(), job.list_id,
                        job.item_count, job.profile)

    # -- DNC groups -----------------------------------------------------------------------

    def add_dnc_records(self, group_id: str, records: Mapping[str, str | None]) -> int:
        """Add (or refresh) DNC records ``phone -> expiredDate``; returns how many are new.

        Raises:
            ApiError: 400 ``tenant_record_limit`` when the new records would pass the limit.
        """
        self._check_tenant_limit(self.dnc.new_records(group_id, records))
        return self.dnc.add(group_id, records, self.clock())

    def dialable(self, list_id: str) -> dict[str, dict[str, Any]]:
        """The list's valid records whose number is in no DNC group: what a dialler scrubbed by
        the groups would call (rejected records are never dialled).

        Raises:
            KeyError: no such list.
        """
        blocked = self.dnc.blocked()
        return {phone: contact for phone, contact in self.lists[list_id].contacts.items()
                if phone.lstrip("+") not in blocked}

    # -- counters ---------------------------------------------------------------------------

    def count_request(self, endpoint: str, status: int | str) -> None:
        """Count one request by endpoint (``METHOD /route``) and outcome (status or fault)."""
        self.requests[(endpoint, str(status))] += 1

    def request_counts(self) -> dict[str, dict[str, int]]:
        """``{endpoint: {status: count}}``."""
        out: dict[str, dict[str, int]] = {}
        for (endpoint, status), n in sorted(self.requests.items()):
            out.setdefault(endpoint, {})[status] = n
        return out
