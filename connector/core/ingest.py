"""The ingest core: every decision of design stages 1-4 and 8, sans I/O.

In the manner of websockets' ``protocol.py``: the core is fed values and returns effects;
a thin driver (:mod:`connector.pipeline.ingest`) does the I/O. It never reads a clock of
its own (the window's is injected), never touches Kafka, and holds no task or thread.

What it is fed, in this order for each consumed list:

1. :meth:`IngestCore.track`: the offsets of one partition, in consume order, when the
   driver hands them to a decoder. From here they count as unsettled, so nothing is
   committed past a record that is still being decoded.
2. :meth:`IngestCore.receive`: the decoded records of that list **in consume order**
   (whatever decode lane produced them), each a :class:`Consumed`. Records of a partition
   revoked meanwhile are dropped (the revoke *generation* tells them apart from records of
   a later assignment of the same partition).

What it gives back (:class:`Effects`; usually empty):

- ``dead_letters``: write each to the DLQ, then :meth:`IngestCore.settle` its ``covered``;
- ``audits``: write each audit record (and, with opt-out publishing or retraction on, the
  opt-out's DNC record or CXone push), then settle their ``covered`` once all are acked;
- ``releases``: numbers the CXone DNC group may release (they opted in again);
- ``batches``: queued inside the core; the driver's submit loop takes them with
  :meth:`IngestCore.take_batch`, in flush order;
- ``counts``: what to add to the metrics (the core imports no metrics library): ``decoded``,
  and ``time_zone_sources`` (per source of the records' time zones).

Settlement (design stage 8): a record is settled only by :meth:`settle` (after the ack of the
record that settles it) or :meth:`settle_batch` (its batch's jobs completed and their
events were acked). :meth:`committable` is what the driver may commit; :meth:`committed`
records what the broker accepted.

Flow control: :meth:`flow` says whether the consumer should pause (too many unsettled
records, or ``max_queued_batches`` batches waiting for submit) or may resume (under the
tracker's resume mark and room in the queue).

Send-time check (issue "Fail closed", item 3): :meth:`prune` takes a batch and the DNC
table's answers for its numbers just before a submit attempt, and returns the batch without
the blocked contacts plus their audit outcomes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from connector.core.models import TP, Batch, ContactEvent, SourceRef
from connector.core.offsets import OffsetTracker
from connector.core.windowing import (
    REASON_CANCELLED,
    REASON_DNC,
    REASON_NO_TIME_ZONE,
    REASON_OPTED_OUT,
    REASON_SUPERSEDED,
    STAGE_FLUSH,
    AuditOutcome,
    Window,
    WindowLimits,
    WindowOutput,
)

#: The audit stage of a contact removed just before a submit attempt.
STAGE_SEND = "SEND"
#: The DLQ stage of a record the window refused.
STAGE_WINDOW = "window"
#: The decoder's first tuple element for success (see ``connector.pipeline.decoding``).
OK = ""


class Consumed(NamedTuple):
    """One consumed record with its decoder's answer (a named tuple: one is built per record).

    Attributes:
        ref: where it came from.
        key: the record key.
        value: the record value (kept to dead-letter it byte for byte).
        headers: the record headers as plain pairs.
        timestamp_ms: the record timestamp (produce time), -1 or 0 when unknown.
        decoded: the decoder's tuple: ``(OK, contact_id, phone_e164, opted_in, item_bytes,
            details, time_zone, time_zone_source)`` (the last two may be left out: no zone) or
            ``(stage, error_class, message, reason)``.
    """

    ref: SourceRef
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    decoded: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record for the DLQ (Kafka Connect's header convention).

    Attributes:
        key: the original key. value: the original bytes. headers: the original headers.
        source: the original record's position.
        stage: where it failed (``decode``, ``validate``, ``normalise``, ``window``, ...).
        error_class: the exception class name written to the DLQ header.
        message: why, never with a phone number in it.
        reason: the metric label (``events_invalid_total{reason}``); "" when not invalid.
        covered: the source records the dead letter settles once acked.
    """

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    source: SourceRef
    stage: str
    error_class: str
    message: str
    reason: str
    covered: tuple[SourceRef, ...]


@dataclass(frozen=True, slots=True)
class Audit:
    """One ``SuppressedContact`` record to write.

    Attributes:
        event: the contact event it is about.
        reason: the audit record's reason (``DNC``, ``OPTED_OUT``, ``NO_TIME_ZONE``; ``UNKNOWN``
            when a superseded opt-in's winner is not in the same output).
        list_name: the DNC list for ``DNC``.
        stage: ``ARRIVAL``, ``FLUSH`` or ``SEND``.
        label: the finer reason for the ``suppressed`` metric.
        opt_out: True for a CRM opt-out (publish it to the DNC topic, push it to CXone).
        covered: the source records it settles.
    """

    event: ContactEvent
    reason: str
    list_name: str | None
    stage: str
    label: str
    opt_out: bool
    covered: tuple[SourceRef, ...]


@dataclass(slots=True)
class Effects:
    """What the driver must do after one call into the core."""

    dead_letters: list[DeadLetter] = field(default_factory=list)
    audits: list[Audit] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    #: Records that became contacts (for the ``decoded`` counter).
    decoded: int = 0
    #: Where those records' time zones came from: source to count (``time_zone_source`` counter;
    #: opt-outs, which resolve none, are left out).
    time_zone_sources: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.dead_letters or self.audits or self.releases or self.batches)


#: The window's reasons for a write that supersedes a pending opt-in of the same contact.
_SUPERSEDING = frozenset({REASON_DNC, REASON_NO_TIME_ZONE})


def audits_of(audits: Sequence[AuditOutcome], stage_override: str | None = None) -> list[Audit]:
    """The audit records of one window output.

    ``CANCELLED_BY_OPT_OUT`` (an opt-in cancelled by a later opt-out) is written as
    ``OPTED_OUT``; ``SUPERSEDED`` (an opt-in replaced by a later write of the same contact that
    a DNC list blocked or that had no time zone) takes the reason and list of that later write.
    """
    winners = {a.event.contact_id: a for a in audits if a.reason in _SUPERSEDING}
    out: list[Audit] = []
    for audit in audits:
        reason, list_name = audit.reason, audit.list_name
        if reason == REASON_CANCELLED:
            reason = REASON_OPTED_OUT
        elif reason == REASON_SUPERSEDED:
            winner = winners.get(audit.event.contact_id)
            reason, list_name = (winner.reason, winner.list_name) if winner is not None else ("UNKNOWN", None)
        # the window's own reason, finer than the audit record's; DNC at flush apart
        label = "dnc_at_flush" if audit.reason == REASON_DNC and audit.stage == STAGE_FLUSH else audit.reason
        out.append(Audit(audit.event, reason, list_name, stage_override or audit.stage, label,
                         audit.reason == REASON_OPTED_OUT, audit.covered))
    return out


class IngestCore:
    """The ingest decisions for one consumer-group member.

    Args:
        limits: the window's flush rules.
        clock: monotonic seconds, the window's clock (tests inject their own).
        lookup_many: the DNC look-up (``{number: list}`` for the blocked ones).
        max_unsettled: unsettled records at which the consumer pauses.
        max_queued_batches: flushed batches waiting for submit at which the consumer pauses.
        release_on_flush: report every flushed batch's numbers in ``releases`` (a CXone DNC
            group is in use: a later opt-in of a number lets it be dialled again).
        refuse_unknown_time_zone: audit (``NO_TIME_ZONE``) instead of send an opt-in whose time
            zone is unknown (``calling_hours.unknown = "refuse"``); see :class:`Window`.
    """

    def __init__(self, limits: WindowLimits, *, clock: Callable[[], float],
                 lookup_many: Callable[[Sequence[str]], Mapping[str, str]], max_unsettled: int,
                 max_queued_batches: int = 2, release_on_flush: bool = False,
                 refuse_unknown_time_zone: bool = False) -> None:
        self.window = Window(limits, clock=clock, lookup_many=lookup_many,
                             refuse_unknown_time_zone=refuse_unknown_time_zone)
        self.tracker = OffsetTracker(max_unsettled)
        self._clock = clock
        self._max_queued = max(1, max_queued_batches)
        self._release_on_flush = release_on_flush
        self._assigned: set[TP] = set()
        self._queue: list[Batch] = []
        self._submitting: Batch | None = None
        self._paused = False
        self._generation = 0
        self._revoked_in: dict[TP, int] = {}
        #: Clock time of the last settlement, or of the first unsettled record after a quiet spell.
        self._progress_at = clock()

    # ------------------------------------------------------------------ partitions

    @property
    def assigned(self) -> frozenset[TP]:
        """Partitions this member owns, as the core knows them."""
        return frozenset(self._assigned)

    @property
    def generation(self) -> int:
        """The revoke generation: pass it back to :meth:`receive` with the list it was taken at."""
        return self._generation

    def assign(self, tps: Iterable[TP]) -> None:
        """Partitions were added to this member's assignment."""
        self._assigned.update(tps)

    def revoke(self, tps: Iterable[TP]) -> tuple[dict[TP, int], Effects]:
        """Partitions are being taken away: drop their buffered records, queued batches' records
        and tracker state.

        Returns:
            What is committable for them (commit it before the revoke completes), and the effects
            of the window's next output (records superseded by dropped ones, to settle).
        """
        revoked = set(tps)
        committable = {tp: off for tp, off in self.tracker.committable().items() if tp in revoked}
        return committable, self.lose(revoked)

    def lose(self, tps: Iterable[TP]) -> Effects:
        """Partitions were lost (another member may own them already): drop, commit nothing."""
        revoked = set(tps)
        self._assigned -= revoked
        self._generation += 1
        for tp in revoked:
            self._revoked_in[tp] = self._generation
        self.window.revoke(revoked)
        kept: list[Batch] = []
        settle: list[SourceRef] = []
        for batch in self._queue:
            covered = [r for r in batch.covered if r.tp not in revoked]
            if len(covered) == len(batch.covered):
                kept.append(batch)
                continue
            contacts = [c for c in batch.contacts if c.source.tp not in revoked]
            if contacts:
                kept.append(Batch.of(contacts, covered, batch.flush_reason, batch.created_at, batch.attempt))
            else:
                settle.extend(covered)  # only superseded records of kept partitions
        self._queue = kept
        self.tracker.revoke(revoked)
        self.settle(settle)
        # records superseded by dropped ones come back in the window's next output
        return self._effects(self.window.poll())

    # ------------------------------------------------------------------ feeding

    def is_assigned(self, tp: TP) -> bool:
        """Whether records of ``tp`` are taken (others were revoked while they waited)."""
        return tp in self._assigned

    def track(self, tp: TP, offsets: list[int]) -> None:
        """Start tracking one partition's offsets of a consumed list, in consume order."""
        if not self.tracker.unsettled:
            self._progress_at = self._clock()
        self.tracker.track_run(tp, offsets)

    def receive(self, generation: int, records: Iterable[Consumed]) -> Effects:
        """Window one consumed list's decoded records, in consume order.

        Args:
            generation: :attr:`generation` when the list was tracked.
            records: the list's records in consume order (per partition at least).
        """
        stale = generation != self._generation
        assigned, revoked_in = self._assigned, self._revoked_in
        events: list[ContactEvent] = []
        append = events.append
        dead: list[DeadLetter] = []
        sources: dict[str, int] = {}
        for rec in records:
            ref = rec.ref
            if stale and (ref.tp not in assigned or revoked_in.get(ref.tp, -1) >= generation):
                continue  # revoked while it was decoded
            out = rec.decoded
            if out[0] != OK:
                stage, error_class, message, reason = out
                dead.append(DeadLetter(rec.key, rec.value, rec.headers, ref, str(stage), str(error_class),
                                       str(message), str(reason), (ref,)))
                continue
            event = ContactEvent(ref, rec.key, rec.value, rec.headers, rec.timestamp_ms, *out[1:])  # type: ignore[arg-type]  # decoded: it had a value
            append(event)
            zone_source = event.time_zone_source
            if zone_source:
                sources[zone_source] = sources.get(zone_source, 0) + 1
        effects = self._effects(self.window.add_many(events)) if events else Effects()
        effects.decoded = len(events)
        effects.time_zone_sources = sources
        if dead:
            effects.dead_letters[:0] = dead
        return effects

    def poll(self) -> Effects:
        """The window's age check; call it periodically."""
        return self._effects(self.window.poll())

    def flush_all(self, reason: str = "shutdown") -> Effects:
        """Flush whatever the window holds (shutdown)."""
        return self._effects(self.window.flush_all(reason))

    def _effects(self, out: WindowOutput) -> Effects:
        effects = Effects()
        if not out:
            return effects
        if out.released:  # superseded by a record a revoke dropped: nothing to write
            self.settle(out.released)
        for rejected in out.rejects:
            event = rejected.event
            effects.dead_letters.append(DeadLetter(
                event.key, event.raw, event.headers, event.source, STAGE_WINDOW,
                f"connector.windowing.{rejected.reason}", rejected.message, "", rejected.covered))
        if out.audits:
            effects.audits = audits_of(out.audits)
        if self._release_on_flush:
            # in flush order with the opt-outs around them: a later opt-out blocks again
            for batch in out.batches:
                effects.releases.extend(contact.phone_e164 for contact in batch.contacts)
        if out.batches:
            effects.batches = list(out.batches)
            self._queue.extend(out.batches)
        return effects

    # ------------------------------------------------------------------ delivery side

    @property
    def queued(self) -> int:
        """Flushed batches waiting for submit (the one being handed over included)."""
        return len(self._queue) + (self._submitting is not None)

    def take_batch(self) -> Batch | None:
        """The oldest flushed batch, now being handed to delivery (None when none waits)."""
        if not self._queue:
            return None
        self._submitting = self._queue.pop(0)
        return self._submitting

    def handed_over(self) -> None:
        """The batch from :meth:`take_batch` is in delivery's hands now."""
        self._submitting = None

    def prune(self, batch: Batch, blocked: Mapping[str, str]) -> tuple[Batch | None, list[Audit]]:
        """Drop the contacts the DNC table blocks just before a submit attempt.

        Args:
            batch: the batch about to be (re)submitted.
            blocked: the DNC answers for its numbers (``{number: list}`` of the blocked ones).

        Returns:
            The batch to send (the same object when nothing is blocked; None when nothing is
            left, and then every covered record settles with the audits) and the audit
            outcomes of the removed contacts. A pruned batch keeps its covered records: they
            settle when it completes; its idempotency key changes with its contacts.
        """
        if not blocked:
            return batch, []
        kept = [c for c in batch.contacts if c.phone_e164 not in blocked]
        if len(kept) == len(batch.contacts):
            return batch, []
        audits = [Audit(c, REASON_DNC, blocked[c.phone_e164], STAGE_SEND, "dnc_at_send", False, ())
                  for c in batch.contacts if c.phone_e164 in blocked]
        if not kept:
            return None, audits
        return dataclasses.replace(batch, contacts=kept), audits

    def settle(self, refs: Iterable[SourceRef]) -> None:
        """Records whose settling record the broker acknowledged (refs of revoked partitions
        are ignored)."""
        before = self.tracker.unsettled
        self.tracker.settle_many(refs)
        if self.tracker.unsettled != before:
            self._progress_at = self._clock()

    def settle_batch(self, batch: Batch) -> None:
        """Every record a batch covers: its jobs completed and their events were acked, or its
        records were dead-lettered."""
        before = self.tracker.unsettled
        self.tracker.settle_offsets(batch.covered_offsets())
        if self.tracker.unsettled != before:
            self._progress_at = self._clock()

    # ------------------------------------------------------------------ commits, flow, health

    def committable(self) -> dict[TP, int]:
        """Per partition, the next offset to read after the settled prefix (new ones only)."""
        return self.tracker.committable()

    def committed(self, offsets: dict[TP, int]) -> None:
        """What the broker accepted."""
        self.tracker.mark_committed(offsets)

    @property
    def unsettled(self) -> int:
        """Records tracked and not settled."""
        return self.tracker.unsettled

    def stalled_for(self) -> float:
        """Seconds records have been waiting while nothing settled (0 when none waits)."""
        if not self.tracker.unsettled:
            return 0.0
        return max(0.0, self._clock() - self._progress_at)

    @property
    def paused(self) -> bool:
        """Whether the core asked the consumer to pause."""
        return self._paused

    def flow(self) -> bool | None:
        """The flow-control decision: True to pause, False to resume, None to leave it."""
        queued = self.queued
        if not self._paused and (self.tracker.over_limit or queued >= self._max_queued):
            self._paused = True
            return True
        if self._paused and self.tracker.under_resume_mark and queued < self._max_queued:
            self._paused = False
            return False
        return None
