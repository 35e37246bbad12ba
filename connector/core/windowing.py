"""The window: compliant contacts gathered into batches. Pure, with an injected clock.

Rules, per record handed to :meth:`Window.add_many` (in consume order; ``add`` is one record):

1. The last write per contact id wins. The record it replaces is *superseded*: it is not
   sent, but it is settled with whatever settles the winner (it goes into that batch's
   ``covered``, or that audit outcome's ``covered``).
2. An opt-out never enters the window. It is reported at once as an audit outcome
   (``OPTED_OUT``); a pending opt-in of the same contact is cancelled and reported too
   (``CANCELLED_BY_OPT_OUT``). Neither is in any batch.
3. ``add_many()`` checks the opt-ins against the DNC table on arrival, all of one call in
   one look-up (the caller does not): a blocked number is reported at once (``DNC``, stage
   ``ARRIVAL``) and, being the last write, it supersedes any pending opt-in of that contact
   (reported as ``SUPERSEDED``).
   With ``refuse_unknown_time_zone``, an opt-in whose time zone is unknown
   (:attr:`ContactEvent.time_zone` empty) is reported the same way (``NO_TIME_ZONE``, stage
   ``ARRIVAL``; a DNC block takes precedence): a dialler cannot keep to calling hours for it.
4. A contact whose payload alone cannot fit in ``max_bytes`` is rejected (``TOO_LARGE``)
   for the caller to dead-letter; it too supersedes a pending opt-in of the contact.
5. A batch is flushed when it reaches ``max_items`` (``"size"``), when adding a record
   would take its estimated payload above ``max_bytes`` (``"bytes"``, flushed *before*
   that record goes in), when the window is ``max_age_s`` old, measured from the first
   record that went into an empty window (``"age"``, checked by :meth:`Window.poll` and on
   entry to every ``add_many()``), and on :meth:`Window.flush_all` (``"shutdown"``).
6. At flush every number is checked against the DNC table again (one look-up for the
   batch); a blocked contact is reported (``DNC``, stage ``FLUSH``) instead of being sent.
7. :meth:`Window.revoke` drops every buffered record of the revoked partitions; nothing is
   settled for them (the next owner reads them again). Records of kept partitions that
   were superseded by a dropped record come back in the next output's ``released``: the
   caller settles them without writing anything.

Every record handed to ``add_many()`` comes back exactly once: in one batch's ``covered``, in
one audit or reject outcome's ``covered``, in one ``released``, or dropped by ``revoke``.
The caller writes each audit record (or dead letter) and settles its ``covered`` after the
producer acknowledged it; a batch's ``covered`` is settled by the delivery side.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from connector.core.models import TP, Batch, ContactEvent, SourceRef

REASON_DNC = "DNC"
REASON_OPTED_OUT = "OPTED_OUT"
REASON_CANCELLED = "CANCELLED_BY_OPT_OUT"
REASON_SUPERSEDED = "SUPERSEDED"
REASON_TOO_LARGE = "TOO_LARGE"
#: An opt-in refused because its time zone is unknown (``refuse_unknown_time_zone``).
REASON_NO_TIME_ZONE = "NO_TIME_ZONE"

STAGE_ARRIVAL = "ARRIVAL"
STAGE_FLUSH = "FLUSH"

#: Bytes reserved for the bulk-insert envelope around the items:
#: ``{"contactListId": "<uuid>", "items": [...]}`` with room for a long list id.
DEFAULT_ENVELOPE_BYTES = 128


def _json_str_len(value: str | None) -> int:
    """Bytes of ``value`` as a JSON string with ``json.dumps`` defaults (ensure_ascii)."""
    if value is None:
        return 4  # null
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return len(value) + 2
    return len(json.dumps(value))


# '{"phoneNumber": , "firstName": , "lastName": , "email": , "customFields": {}}'
_ITEM_FIXED = len(
    json.dumps({"phoneNumber": "", "firstName": "", "lastName": "", "email": "", "customFields": {}})
) - 4 * 2


#: The ``v2`` custom field of a contact's time zone (``connector.cxone.protocol.V2_TIME_ZONE_FIELD``).
TIME_ZONE_FIELD = "timeZone"

#: What an ``optInDate`` custom field's value is measured as: ``YYYY-MM-DDTHH:MM:SSZ``, the
#: longest ``connector.cxone.protocol.iso_utc`` writes (years 1 to 999 are shorter).
_OPT_IN_DATE = "0000-00-00T00:00:00Z"


def v2_item(contact: ContactEvent) -> dict[str, object]:
    """The size model of a contact's ``v2`` bulk-insert item.

    ``connector.cxone.protocol.v2_item`` builds the item sent: the same fields, but a missing
    name or e-mail left out rather than ``null``, and ``source``, ``optInDate`` and (for a
    contact with a time zone) ``timeZone`` added to the custom fields unless the CRM sent
    them. The model writes ``null`` and a date of the longest form, so it is never smaller;
    :func:`contact_payload_bytes` measures exactly ``json.dumps`` of it.
    """
    custom = contact.custom_fields  # a copy already
    custom.setdefault("source", contact.source_system)
    custom.setdefault("optInDate", _OPT_IN_DATE)
    if contact.time_zone:
        custom.setdefault(TIME_ZONE_FIELD, contact.time_zone)
    return {
        "phoneNumber": contact.phone_e164,
        "firstName": contact.first_name,
        "lastName": contact.last_name,
        "email": contact.email,
        "customFields": custom,
    }


def contact_payload_bytes(contact: ContactEvent) -> int:
    """Estimate a contact's size in a ``v2`` bulk-insert body.

    The size is that of ``json.dumps(v2_item(contact))`` with the defaults (ASCII escapes,
    ``", "`` and ``": "`` separators), the most verbose common encoding, so it is an upper
    bound for compact ones. A missing name or email counts as ``null``.
    """
    return item_payload_bytes(contact.phone_e164, contact.first_name, contact.last_name, contact.email,
                              contact.custom_fields, contact.source_system, contact.time_zone) - 2


def item_payload_bytes(
    phone: str, first_name: str | None, last_name: str | None, email: str | None, custom_fields: dict[str, str],
    source_system: str, time_zone: str = "",
) -> int:
    """What one contact adds to a batch body: :func:`contact_payload_bytes` of a contact with
    these fields plus the ``", "`` separator (:attr:`ContactEvent.item_bytes`); ``time_zone``
    (``""``: none) adds a ``timeZone`` custom field unless the CRM sent one."""
    strings = [phone, first_name or "", last_name or "", email or ""]
    strings += custom_fields.keys()
    strings += custom_fields.values()
    pairs = len(custom_fields)
    # the custom fields the body adds (see v2_item), unless the CRM sent them
    if "source" not in custom_fields:
        strings += ("source", source_system)
        pairs += 1
    if "optInDate" not in custom_fields:
        strings += ("optInDate", _OPT_IN_DATE)
        pairs += 1
    if time_zone and TIME_ZONE_FIELD not in custom_fields:
        strings += (TIME_ZONE_FIELD, time_zone)
        pairs += 1
    # The common case in one check: every string plain ASCII, so each costs its length + 2.
    joined = "".join(strings)
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        size = _ITEM_FIXED + 2 + len(joined) + 2 * len(strings)
        size += 2 * ((first_name is None) + (last_name is None) + (email is None))  # null is 4, "" is 2
    else:
        size = (_ITEM_FIXED + 2 + _json_str_len(phone) + _json_str_len(first_name) + _json_str_len(last_name)
                + _json_str_len(email) + sum(map(_json_str_len, strings[4:])))
    return size + 4 * pairs - 2  # ": " per pair, ", " between pairs (at least source and optInDate)


#: :func:`item_payload_bytes` as the decoder runs it: its C twin
#: (``connector/core/_record_checks.pyx``) when the extension was built.
measure_item: Callable[[str, str | None, str | None, str | None, dict[str, str], str, str], int]
try:
    from connector.core._record_checks import PayloadSize
except ImportError:  # pragma: no cover - a build without the C extensions
    measure_item = item_payload_bytes
else:
    measure_item = PayloadSize(_ITEM_FIXED, _OPT_IN_DATE, _json_str_len)


def item_cost(contact: ContactEvent) -> int:
    """What one contact adds to a batch body: its payload plus the ``", "`` separator
    (precomputed by the decoder in :attr:`ContactEvent.item_bytes` when set)."""
    if contact.item_bytes is not None:
        return contact.item_bytes
    return contact_payload_bytes(contact) + 2


def batch_payload_bytes(
    contacts: Iterable[ContactEvent], envelope_bytes: int = DEFAULT_ENVELOPE_BYTES
) -> int:
    """The estimate the window keeps under ``max_bytes`` for a batch of ``contacts``."""
    return envelope_bytes + sum(item_cost(c) for c in contacts)


@dataclass(frozen=True, slots=True)
class WindowLimits:
    """When the window flushes.

    Raises:
        ValueError: a limit is not positive, or ``max_bytes`` leaves no room for an item.
    """

    max_items: int = 10_000
    max_bytes: int = 8_000_000
    max_age_s: float = 5.0
    envelope_bytes: int = DEFAULT_ENVELOPE_BYTES

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError("max_items must be >= 1")
        if self.max_age_s <= 0:
            raise ValueError("max_age_s must be > 0")
        if self.envelope_bytes < 0 or self.max_bytes <= self.envelope_bytes:
            raise ValueError("max_bytes must exceed envelope_bytes")


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    """A record (and what it superseded) that is not sent, for the audit topic.

    Attributes:
        event: the record the outcome is about.
        reason: ``DNC``, ``OPTED_OUT``, ``CANCELLED_BY_OPT_OUT``, ``SUPERSEDED`` or
            ``NO_TIME_ZONE``.
        stage: ``ARRIVAL`` or ``FLUSH``: when the decision was taken.
        list_name: the DNC list for ``DNC``; otherwise None.
        checked_at: clock time of the decision.
        covered: every source record this outcome settles (``event`` and the records it
            superseded).
    """

    event: ContactEvent
    reason: str
    stage: str
    list_name: str | None
    checked_at: float
    covered: tuple[SourceRef, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the window cannot take, for the dead-letter queue.

    Attributes:
        event: the record.
        reason: ``TOO_LARGE``.
        message: a human-readable explanation (no phone number in it).
        covered: the source records the dead letter settles.
    """

    event: ContactEvent
    reason: str
    message: str
    covered: tuple[SourceRef, ...]


@dataclass(frozen=True, slots=True)
class WindowOutput:
    """What one call to the window hands back; usually empty.

    Attributes:
        batches: flushed batches, oldest first, to submit.
        audits: outcomes to write to the audit topic, then settle.
        rejects: records to dead-letter, then settle.
        released: records to settle directly (superseded by a record a revoke dropped).
    """

    batches: tuple[Batch, ...] = ()
    audits: tuple[AuditOutcome, ...] = ()
    rejects: tuple[Rejected, ...] = ()
    released: tuple[SourceRef, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.batches or self.audits or self.rejects or self.released)


EMPTY = WindowOutput()


class _Entry:
    """The pending winner of one contact and the records it superseded."""

    __slots__ = ("cost", "event", "superseded")

    def __init__(self, event: ContactEvent, cost: int) -> None:
        self.event = event
        self.cost = cost
        self.superseded: list[SourceRef] | None = None

    def refs(self) -> tuple[SourceRef, ...]:
        if self.superseded is None:
            return (self.event.source,)
        return (*self.superseded, self.event.source)


class _Collector:
    """Accumulates one call's outputs without allocating when there are none."""

    __slots__ = ("audits", "batches", "rejects")

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.audits: list[AuditOutcome] = []
        self.rejects: list[Rejected] = []


class Window:
    """Last-write-wins window of opt-ins, flushed into DNC-checked batches.

    Single-threaded; call it from the asyncio loop only.

    Args:
        limits: when to flush.
        clock: monotonic seconds (``time.monotonic`` in production).
        lookup_many: the DNC look-up: E.164 numbers to ``{number: list}`` for those a list
            blocks (``DncSource.lookup_many``). It is called once per :meth:`add_many` on
            arrival and once per flush, and must not raise for E.164 numbers.
        refuse_unknown_time_zone: report an opt-in without a time zone (``NO_TIME_ZONE``)
            instead of sending it (``calling_hours.unknown = "refuse"``). A plain attribute:
            it may be changed between calls.
    """

    def __init__(
        self,
        limits: WindowLimits,
        *,
        clock: Callable[[], float],
        lookup_many: Callable[[Sequence[str]], Mapping[str, str]],
        refuse_unknown_time_zone: bool = False,
    ) -> None:
        self.refuse_unknown_time_zone = refuse_unknown_time_zone
        self._limits = limits
        self._clock = clock
        self._lookup_many = lookup_many
        self._pending: dict[str, _Entry] = {}
        self._bytes = limits.envelope_bytes
        self._started: float | None = None
        self._released: list[SourceRef] = []

    @property
    def limits(self) -> WindowLimits:
        """The flush limits."""
        return self._limits

    def __len__(self) -> int:
        """How many contacts are pending."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """The estimated payload of the pending contacts, envelope included."""
        return self._bytes

    def deadline(self) -> float | None:
        """Clock time at which :meth:`poll` will flush on age; None when the window is empty."""
        if self._started is None:
            return None
        return self._started + self._limits.max_age_s

    def add(self, event: ContactEvent) -> WindowOutput:
        """Take one decoded record, in consume order (:meth:`add_many` of one)."""
        return self.add_many((event,))

    def add_many(self, events: Sequence[ContactEvent]) -> WindowOutput:
        """Take decoded records, in consume order.

        The age is checked once, on entry; the DNC table is asked once, for every opt-in of
        ``events``, so a call is one consumed batch, not a long stretch of time.

        Returns:
            Batches flushed by this call (an aged window, a full window, or one that a record
            would push over ``max_bytes``) and the outcomes these records caused.
        """
        out: _Collector | None = None
        limits = self._limits
        if self._started is not None and self._clock() - self._started >= limits.max_age_s:
            out = _Collector()
            self._flush("age", out)
        blocked = self._lookup_many([e.phone_e164 for e in events if e.opted_in])
        pending = self._pending
        refuse_unknown = self.refuse_unknown_time_zone
        now: float | None = None
        for event in events:
            contact_id = event.contact_id
            previous = pending.get(contact_id)

            blocked_by: str | None = None
            reason: str | None = None
            if not event.opted_in:
                reason = REASON_OPTED_OUT
            else:
                if blocked:
                    blocked_by = blocked.get(event.phone_e164)
                    if blocked_by is not None:
                        reason = REASON_DNC
                if reason is None and refuse_unknown and not event.time_zone:
                    reason = REASON_NO_TIME_ZONE
            if reason is not None:
                out = out or _Collector()
                if now is None:
                    now = self._clock()
                if previous is not None:
                    self._drop(contact_id, previous)
                    cancel = REASON_CANCELLED if reason == REASON_OPTED_OUT else REASON_SUPERSEDED
                    out.audits.append(
                        AuditOutcome(previous.event, cancel, STAGE_ARRIVAL, None, now, previous.refs())
                    )
                out.audits.append(AuditOutcome(event, reason, STAGE_ARRIVAL, blocked_by, now, (event.source,)))
                continue

            cost = item_cost(event)
            if limits.envelope_bytes + cost > limits.max_bytes:
                out = out or _Collector()
                covered: tuple[SourceRef, ...] = (event.source,)
                if previous is not None:
                    self._drop(contact_id, previous)
                    covered = (*previous.refs(), event.source)
                message = f"contact payload of {cost} bytes exceeds max_bytes {limits.max_bytes}"
                out.rejects.append(Rejected(event, REASON_TOO_LARGE, message, covered))
                continue

            growth = cost - previous.cost if previous is not None else cost
            if pending and self._bytes + growth > limits.max_bytes:
                out = out or _Collector()
                self._flush("bytes", out)
                pending = self._pending
                previous = None  # flushed with the batch; this record starts the next window

            if previous is None:
                if self._started is None:
                    self._started = self._clock()
                pending[contact_id] = _Entry(event, cost)
                self._bytes += cost
            else:
                if previous.superseded is None:
                    previous.superseded = [previous.event.source]
                else:
                    previous.superseded.append(previous.event.source)
                previous.event = event
                self._bytes += cost - previous.cost
                previous.cost = cost

            if len(pending) >= limits.max_items:
                out = out or _Collector()
                self._flush("size", out)
                pending = self._pending
        return self._finish(out)

    def poll(self) -> WindowOutput:
        """Flush the window when it is ``max_age_s`` old; call it periodically."""
        if self._started is not None and self._clock() - self._started >= self._limits.max_age_s:
            out = _Collector()
            self._flush("age", out)
            return self._finish(out)
        return self._finish(None)

    def flush_all(self, reason: str = "shutdown") -> WindowOutput:
        """Flush whatever is pending, whatever its age (shutdown)."""
        out = _Collector()
        self._flush(reason, out)
        return self._finish(out)

    def revoke(self, partitions: Iterable[TP]) -> None:
        """Drop every buffered record of ``partitions``; nothing of them is to be settled.

        A kept record superseded by a dropped one is handed back in the next output's
        ``released``.
        """
        revoked = set(partitions)
        if not revoked or not self._pending:
            return
        for contact_id, entry in list(self._pending.items()):
            superseded = entry.superseded
            kept = None if superseded is None else [ref for ref in superseded if ref.tp not in revoked]
            if entry.event.source.tp in revoked:
                self._drop(contact_id, entry)
                if kept:
                    self._released.extend(kept)
            elif superseded is not None:
                entry.superseded = kept or None

    def _drop(self, contact_id: str, entry: _Entry) -> None:
        del self._pending[contact_id]
        self._bytes -= entry.cost
        if not self._pending:
            self._started = None

    def _flush(self, reason: str, out: _Collector) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        self._bytes = self._limits.envelope_bytes
        self._started = None
        now = self._clock()
        blocked = self._lookup_many([entry.event.phone_e164 for entry in pending.values()])
        contacts: list[ContactEvent] = []
        covered: list[SourceRef] = []
        for entry in pending.values():
            event = entry.event
            blocked_by = blocked.get(event.phone_e164) if blocked else None
            if blocked_by is not None:
                out.audits.append(AuditOutcome(event, REASON_DNC, STAGE_FLUSH, blocked_by, now, entry.refs()))
                continue
            contacts.append(event)
            if entry.superseded is not None:
                covered.extend(entry.superseded)
            covered.append(event.source)
        if contacts:
            # in source order: the same records always make the same body, however the
            # partitions were interleaved when they were read (the key derives from them)
            contacts.sort(key=_source_of)
            out.batches.append(Batch.of(contacts, covered, reason, now))

    def _finish(self, out: _Collector | None) -> WindowOutput:
        released = self._released
        if released:
            self._released = []
        elif out is None or not (out.batches or out.audits or out.rejects):
            return EMPTY
        if out is None:
            return WindowOutput(released=tuple(released))
        return WindowOutput(tuple(out.batches), tuple(out.audits), tuple(out.rejects), tuple(released))


def _source_of(contact: ContactEvent) -> SourceRef:
    return contact.source
