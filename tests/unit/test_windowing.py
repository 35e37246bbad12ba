"""Unit and property tests for connector.core.windowing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import event as hyp_event
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.models import TP, Batch, ContactEvent, SourceRef
from connector.core.windowing import (
    EMPTY,
    REASON_CANCELLED,
    REASON_DNC,
    REASON_NO_TIME_ZONE,
    REASON_OPTED_OUT,
    REASON_SUPERSEDED,
    REASON_TOO_LARGE,
    STAGE_ARRIVAL,
    STAGE_FLUSH,
    AuditOutcome,
    Rejected,
    Window,
    WindowLimits,
    WindowOutput,
    batch_payload_bytes,
    contact_payload_bytes,
    item_cost,
    item_payload_bytes,
    v2_item,
)
from connector.cxone.protocol import v2_item as sent_item

TOPIC = "crm.contacts.optin"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Offsets:
    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def take(self, partition: int) -> int:
        offset = self.next.get(partition, 0)
        self.next[partition] = offset + 1
        return offset


def make_event(
    contact: str,
    offset: int,
    *,
    phone: str = "+14155550100",
    opted_in: bool = True,
    partition: int = 0,
    first_name: str | None = "Ada",
    last_name: str | None = "Lovelace",
    email: str | None = "ada@example.com",
    custom: dict[str, str] | None = None,
    time_zone: str = "",
) -> ContactEvent:
    return ContactEvent.of(
        source=SourceRef(TOPIC, partition, offset),
        key=contact.encode(),
        raw=b"\x00raw",
        headers=[("h", b"v")],
        produced_at_ms=1,
        event_id=f"ev-{partition}-{offset}",
        contact_id=contact,
        phone_e164=phone,
        opted_in=opted_in,
        first_name=first_name,
        last_name=last_name,
        email=email,
        custom_fields=custom if custom is not None else {"source": "crm"},
        changed_at_ms=2,
        source_system="crm",
        time_zone=time_zone,
        time_zone_source="event" if time_zone else "unknown",
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lookup_in(table: dict[str, str]) -> Callable[[Sequence[str]], dict[str, str]]:
    """A batch DNC look-up over a plain dict (read at call time, so tests can change it)."""
    return lambda phones: {p: table[p] for p in phones if p in table}


def make_window(clock: Clock, dnc: dict[str, str] | None = None, **limits: float) -> Window:
    table = dnc if dnc is not None else {}
    return Window(WindowLimits(**limits), clock=clock, lookup_many=lookup_in(table))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- payload size


@settings(max_examples=200)
@given(
    first=st.one_of(st.none(), st.text(max_size=20)),
    last=st.one_of(st.none(), st.text(max_size=20)),
    email=st.one_of(st.none(), st.text(max_size=20)),
    custom=st.dictionaries(st.sampled_from(["timeZone", "source"]) | st.text(max_size=8), st.text(max_size=12),
                           max_size=4),
    zone=st.sampled_from(["", "America/Chicago", "America/Argentina/ComodRivadavia"]) | st.text(max_size=40),
)
def test_payload_bytes_is_exact_json_size(
    first: str | None, last: str | None, email: str | None, custom: dict[str, str], zone: str
) -> None:
    event = make_event("c", 0, first_name=first, last_name=last, email=email, custom=custom, time_zone=zone)
    assert ("timeZone" in sent_item(event)["customFields"]) == bool(zone or "timeZone" in custom)
    assert contact_payload_bytes(event) == len(json.dumps(v2_item(event)).encode())
    assert item_payload_bytes(event.phone_e164, first, last, email, custom, "crm", zone) == \
        contact_payload_bytes(event) + 2
    # an upper bound of the item actually sent (names left out when missing, the date's real length)
    assert contact_payload_bytes(event) >= len(json.dumps(sent_item(event)).encode())
    event.item_bytes = 7
    assert item_cost(event) == 7  # a decoder's figure is taken as given
    compact = json.dumps(v2_item(event), separators=(",", ":"), ensure_ascii=False).encode()
    assert contact_payload_bytes(event) >= len(compact)


def test_batch_payload_bytes_bounds_a_real_body() -> None:
    contacts = [make_event(f"c{i}", i, first_name="é" * i) for i in range(5)]
    body = json.dumps({"contactListId": "12345678-1234-1234-1234-123456789012",
                       "items": [v2_item(c) for c in contacts]}).encode()
    assert len(body) <= batch_payload_bytes(contacts)


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        WindowLimits(max_items=0)
    with pytest.raises(ValueError):
        WindowLimits(max_age_s=0)
    with pytest.raises(ValueError):
        WindowLimits(max_bytes=100, envelope_bytes=100)


# ---------------------------------------------------------------------------- rules


def test_last_write_wins_and_superseded_are_covered(clock: Clock) -> None:
    window = make_window(clock)
    assert window.add(make_event("a", 0, phone="+14155550100")) is EMPTY
    assert window.add(make_event("b", 1)) is EMPTY
    assert window.add(make_event("a", 2, phone="+14155550101")) is EMPTY
    assert len(window) == 2
    out = window.flush_all()
    (batch,) = out.batches
    # in source order (b's record is offset 1, a's winner offset 2): the same records make the same body
    assert [(c.contact_id, c.phone_e164) for c in batch.contacts] == [("b", "+14155550100"), ("a", "+14155550101")]
    assert sorted(r.offset for r in batch.covered) == [0, 1, 2]
    assert batch.flush_reason == "shutdown"
    assert batch.created_at == clock.now
    assert out.audits == () and out.rejects == ()
    assert len(window) == 0 and window.flush_all() is EMPTY


def test_opt_out_cancels_pending_opt_in(clock: Clock) -> None:
    window = make_window(clock)
    window.add(make_event("a", 0))
    window.add(make_event("a", 1))
    window.add(make_event("b", 2))
    out = window.add(make_event("a", 3, opted_in=False))
    assert out.batches == ()
    cancelled, opted_out = out.audits
    assert (cancelled.reason, cancelled.stage, cancelled.event.source.offset) == (REASON_CANCELLED, STAGE_ARRIVAL, 1)
    assert [r.offset for r in cancelled.covered] == [0, 1]
    assert (opted_out.reason, opted_out.covered) == (REASON_OPTED_OUT, (SourceRef(TOPIC, 0, 3),))
    (batch,) = window.flush_all().batches
    assert [c.contact_id for c in batch.contacts] == ["b"]


def test_opt_out_without_pending_is_audited(clock: Clock) -> None:
    window = make_window(clock)
    out = window.add(make_event("a", 0, opted_in=False))
    assert [a.reason for a in out.audits] == [REASON_OPTED_OUT]
    assert window.flush_all() is EMPTY


def test_dnc_at_arrival_suppresses_and_supersedes(clock: Clock) -> None:
    dnc: dict[str, str] = {}
    window = make_window(clock, dnc)
    window.add(make_event("a", 0, phone="+14155550100"))
    dnc["+14155550199"] = "national"
    out = window.add(make_event("a", 1, phone="+14155550199"))
    superseded, blocked = out.audits
    assert (superseded.reason, superseded.covered) == (REASON_SUPERSEDED, (SourceRef(TOPIC, 0, 0),))
    assert (blocked.reason, blocked.stage, blocked.list_name) == (REASON_DNC, STAGE_ARRIVAL, "national")
    assert window.flush_all() is EMPTY


def test_dnc_at_flush_suppresses_late_additions(clock: Clock) -> None:
    dnc: dict[str, str] = {}
    window = make_window(clock, dnc)
    window.add(make_event("a", 0, phone="+14155550100"))
    window.add(make_event("a", 1, phone="+14155550101"))
    window.add(make_event("b", 2, phone="+14155550102"))
    dnc["+14155550101"] = "internal"
    out = window.flush_all()
    (batch,) = out.batches
    assert [c.contact_id for c in batch.contacts] == ["b"]
    assert batch.covered == [SourceRef(TOPIC, 0, 2)]
    (audit,) = out.audits
    assert (audit.reason, audit.stage, audit.list_name) == (REASON_DNC, STAGE_FLUSH, "internal")
    assert [r.offset for r in audit.covered] == [0, 1]


def test_all_suppressed_at_flush_gives_no_batch(clock: Clock) -> None:
    dnc: dict[str, str] = {}
    window = make_window(clock, dnc)
    window.add(make_event("a", 0))
    dnc["+14155550100"] = "national"
    out = window.flush_all()
    assert out.batches == () and len(out.audits) == 1


def test_flush_on_size(clock: Clock) -> None:
    window = make_window(clock, max_items=3)
    window.add(make_event("a", 0))
    window.add(make_event("b", 1))
    assert window.add(make_event("a", 2)) is EMPTY  # a replacement does not grow the window
    out = window.add(make_event("c", 3))
    (batch,) = out.batches
    assert batch.flush_reason == "size" and len(batch.contacts) == 3
    assert len(window) == 0


def test_flush_on_bytes_before_the_record_goes_in(clock: Clock) -> None:
    one = contact_payload_bytes(make_event("a", 0)) + 2
    window = make_window(clock, max_bytes=10 + 2 * one + 1, envelope_bytes=10)
    window.add(make_event("a", 0))
    window.add(make_event("b", 1))
    assert window.pending_bytes == 10 + 2 * one
    out = window.add(make_event("c", 2))
    (batch,) = out.batches
    assert batch.flush_reason == "bytes"
    assert [c.contact_id for c in batch.contacts] == ["a", "b"]
    assert [c.contact_id for c in window.flush_all().batches[0].contacts] == ["c"]


def test_growing_replacement_flushes_old_value_first(clock: Clock) -> None:
    one = contact_payload_bytes(make_event("a", 0)) + 2
    window = make_window(clock, max_bytes=10 + 2 * one + 5, envelope_bytes=10)
    window.add(make_event("a", 0))
    window.add(make_event("b", 1))
    assert window.add(make_event("a", 2, first_name="Ada A")) is EMPTY  # +2 bytes still fits
    out = window.add(make_event("a", 3, first_name="Ada Augusta"))
    (batch,) = out.batches
    assert batch.flush_reason == "bytes"
    assert [c.first_name for c in batch.contacts] == ["Ada", "Ada A"]  # in source order: b (1), a (2)
    assert sorted(r.offset for r in batch.covered) == [0, 1, 2]
    (batch,) = window.flush_all().batches
    assert batch.contacts[0].first_name == "Ada Augusta"


def test_too_large_record_is_rejected_with_what_it_supersedes(clock: Clock) -> None:
    window = make_window(clock, max_bytes=300, envelope_bytes=10)
    window.add(make_event("a", 0))
    out = window.add(make_event("a", 1, first_name="x" * 400))
    (reject,) = out.rejects
    assert isinstance(reject, Rejected)
    assert reject.reason == REASON_TOO_LARGE and "x" * 10 not in reject.message
    assert [r.offset for r in reject.covered] == [0, 1]
    assert window.flush_all() is EMPTY


def test_flush_on_age_from_first_record(clock: Clock) -> None:
    window = make_window(clock, max_age_s=5.0)
    assert window.deadline() is None
    window.add(make_event("a", 0))
    assert window.deadline() == clock.now + 5.0
    clock.now += 3
    window.add(make_event("b", 1))
    assert window.poll() is EMPTY
    clock.now += 2
    (batch,) = window.poll().batches
    assert batch.flush_reason == "age" and len(batch.contacts) == 2
    assert window.poll() is EMPTY and window.deadline() is None


def test_add_flushes_an_overdue_window_first(clock: Clock) -> None:
    window = make_window(clock, max_age_s=1.0)
    window.add(make_event("a", 0))
    clock.now += 10
    out = window.add(make_event("a", 1, phone="+14155550101"))
    (batch,) = out.batches
    assert batch.flush_reason == "age" and batch.contacts[0].phone_e164 == "+14155550100"
    assert window.flush_all().batches[0].contacts[0].phone_e164 == "+14155550101"


def test_cancelling_everything_resets_the_age(clock: Clock) -> None:
    window = make_window(clock, max_age_s=5.0)
    window.add(make_event("a", 0))
    window.add(make_event("a", 1, opted_in=False))
    assert window.deadline() is None
    clock.now += 4
    window.add(make_event("b", 2))
    clock.now += 4
    assert window.poll() is EMPTY


def test_revoke_drops_records_and_releases_orphans(clock: Clock) -> None:
    window = make_window(clock)
    window.add(make_event("a", 0, partition=0))
    window.add(make_event("b", 0, partition=1))
    window.add(make_event("c", 1, partition=0))
    window.add(make_event("c", 1, partition=1))  # winner on the revoked partition
    window.add(make_event("d", 2, partition=1))
    window.add(make_event("d", 2, partition=0))  # winner kept, superseded one revoked
    window.revoke([(TOPIC, 1)])
    assert len(window) == 2
    out = window.flush_all()
    (batch,) = out.batches
    assert [c.contact_id for c in batch.contacts] == ["a", "d"]
    assert sorted(batch.covered, key=lambda r: r.offset) == [SourceRef(TOPIC, 0, 0), SourceRef(TOPIC, 0, 2)]
    assert out.released == (SourceRef(TOPIC, 0, 1),)
    window.revoke([])
    assert window.flush_all() is EMPTY


def test_revoke_of_everything_resets_age(clock: Clock) -> None:
    window = make_window(clock)
    window.add(make_event("a", 0, partition=3))
    window.revoke([(TOPIC, 3)])
    assert len(window) == 0 and window.deadline() is None and window.pending_bytes == 128


def test_output_truthiness() -> None:
    assert not WindowOutput()
    assert WindowOutput(released=(SourceRef("t", 0, 1),))


# ---------------------------------------------------------------------------- property test

PHONES = [f"+1415555010{i}" for i in range(6)]
CONTACTS = ["c0", "c1", "c2", "c3"]
ENVELOPE = 10

add_op = st.tuples(
    st.just("add"),
    st.sampled_from(CONTACTS),
    st.sampled_from([True, True, True, False]),
    st.integers(0, 1),
    st.integers(0, len(PHONES) - 1),
    st.sampled_from([0, 0, 1, 2, 5, 30, 200]),
)
dnc_op = st.tuples(
    st.just("dnc"), st.integers(0, len(PHONES) - 1), st.sampled_from([None, None, "national", "internal"])
)
tick_op = st.tuples(st.just("tick"), st.floats(0, 3, allow_nan=False))
poll_op = st.tuples(st.just("poll"))
revoke_op = st.tuples(st.just("revoke"), st.frozensets(st.integers(0, 1), min_size=1, max_size=1))
ops_strategy = st.lists(
    st.one_of(add_op, add_op, add_op, add_op, dnc_op, tick_op, poll_op, revoke_op), min_size=20, max_size=100
)
#: The cost of one item with an empty first name; limits are built around it to hit boundaries.
BASE_COST = contact_payload_bytes(make_event("c0", 0, first_name="")) + 2


@dataclass
class Reference:
    """A deliberately naive model: the window is a list of records, everything recomputed."""

    max_items: int
    max_bytes: int
    max_age: float
    records: list[ContactEvent] = field(default_factory=list)
    start: float | None = None
    batches: list[tuple[str, list[str], frozenset[SourceRef]]] = field(default_factory=list)
    audits: list[tuple[str, str, str, str | None, frozenset[SourceRef]]] = field(default_factory=list)
    rejects: list[tuple[str, frozenset[SourceRef]]] = field(default_factory=list)
    released: list[SourceRef] = field(default_factory=list)

    def winners(self, records: list[ContactEvent] | None = None) -> dict[str, ContactEvent]:
        result: dict[str, ContactEvent] = {}
        for rec in records if records is not None else self.records:
            if rec.contact_id not in result:
                result[rec.contact_id] = rec
        for rec in records if records is not None else self.records:
            result[rec.contact_id] = rec  # keeps first-seen order, last value
        return result

    def size(self, records: list[ContactEvent]) -> int:
        return ENVELOPE + sum(contact_payload_bytes(w) + 2 for w in self.winners(records).values())

    def take(self, contact: str) -> list[ContactEvent]:
        mine = [r for r in self.records if r.contact_id == contact]
        self.records = [r for r in self.records if r.contact_id != contact]
        if not self.records:
            self.start = None
        return mine

    def flush(self, reason: str, dnc: dict[str, str]) -> None:
        if not self.records:
            return
        contacts: list[str] = []
        covered: set[SourceRef] = set()
        for cid, winner in self.winners().items():
            refs = frozenset(r.source for r in self.records if r.contact_id == cid)
            if winner.phone_e164 in dnc:
                self.audits.append((winner.event_id, REASON_DNC, STAGE_FLUSH, dnc[winner.phone_e164], refs))
            else:
                contacts.append(winner.event_id)
                covered |= refs
        if contacts:
            self.batches.append((reason, contacts, frozenset(covered)))
        self.records = []
        self.start = None

    def add(self, event: ContactEvent, now: float, dnc: dict[str, str]) -> None:
        if self.start is not None and now - self.start >= self.max_age:
            self.flush("age", dnc)
        blocked = None if not event.opted_in else dnc.get(event.phone_e164)
        if not event.opted_in or blocked is not None:
            earlier = self.take(event.contact_id)
            if earlier:
                cause = REASON_CANCELLED if not event.opted_in else REASON_SUPERSEDED
                refs = frozenset(r.source for r in earlier)
                self.audits.append((earlier[-1].event_id, cause, STAGE_ARRIVAL, None, refs))
            reason = REASON_OPTED_OUT if not event.opted_in else REASON_DNC
            self.audits.append((event.event_id, reason, STAGE_ARRIVAL, blocked, frozenset([event.source])))
            return
        if ENVELOPE + contact_payload_bytes(event) + 2 > self.max_bytes:
            earlier = self.take(event.contact_id)
            self.rejects.append((event.event_id, frozenset(r.source for r in [*earlier, event])))
            return
        if self.records and self.size([*self.records, event]) > self.max_bytes:
            self.flush("bytes", dnc)
        if not self.records:
            self.start = now
        self.records.append(event)
        if len(self.winners()) >= self.max_items:
            self.flush("size", dnc)

    def revoke(self, partitions: set[TP]) -> None:
        for cid, winner in self.winners().items():
            if winner.source.tp in partitions:
                mine = self.take(cid)
                self.released.extend(r.source for r in mine if r.source.tp not in partitions)
        self.records = [r for r in self.records if r.source.tp not in partitions]
        if not self.records:
            self.start = None


@settings(max_examples=400, deadline=None)
@given(
    ops=ops_strategy,
    max_items=st.integers(1, 6),
    fit=st.integers(1, 6),
    slack=st.integers(-1, 12),
    max_age=st.sampled_from([1.0, 2.5, 5.0]),
)
def test_window_matches_reference_model(
    ops: list[tuple[object, ...]], max_items: int, fit: int, slack: int, max_age: float
) -> None:
    max_bytes = ENVELOPE + fit * BASE_COST + slack
    clock = Clock()
    dnc: dict[str, str] = {}
    window = Window(
        WindowLimits(max_items=max_items, max_bytes=max_bytes, max_age_s=max_age, envelope_bytes=ENVELOPE),
        clock=clock,
        lookup_many=lookup_in(dnc),
    )
    ref = Reference(max_items, max_bytes, max_age)
    offsets = Offsets()
    inputs: list[SourceRef] = []
    revoked: set[SourceRef] = set()
    outputs: list[WindowOutput] = []
    live_by_partition: dict[TP, list[SourceRef]] = {}

    def record(out: WindowOutput) -> None:
        outputs.append(out)
        for batch in out.batches:
            check_batch(batch, dnc, max_items, max_bytes)

    # Consecutive adds (no time passing, no DNC change between them) go in as one consumed
    # batch, alternately through add_many and one add at a time: both must match the model.
    run: list[ContactEvent] = []

    def add_run() -> None:
        if len(run) > 1 and len(inputs) % 2:
            record(window.add_many(run))
        else:
            for one in run:
                record(window.add(one))
        run.clear()

    for op in ops:
        kind = op[0]
        if kind != "add":
            add_run()
        if kind == "add":
            _, contact, opted_in, partition, phone, name_len = op
            assert isinstance(partition, int) and isinstance(phone, int) and isinstance(name_len, int)
            event = make_event(str(contact), offsets.take(partition), phone=PHONES[phone],
                               opted_in=bool(opted_in), partition=partition, first_name="n" * name_len)
            if len(inputs) % 3 == 0:  # some with the size precomputed, as the decoder does
                event.item_bytes = item_cost(event)
            inputs.append(event.source)
            live_by_partition.setdefault(event.source.tp, []).append(event.source)
            ref.add(event, clock.now, dnc)
            run.append(event)
        elif kind == "dnc":
            _, phone, list_name = op
            assert isinstance(phone, int)
            if list_name is None:
                dnc.pop(PHONES[phone], None)
            else:
                dnc[PHONES[phone]] = str(list_name)
        elif kind == "tick":
            assert isinstance(op[1], float)
            clock.now += op[1]
        elif kind == "poll":
            if ref.start is not None and clock.now - ref.start >= max_age:
                ref.flush("age", dnc)
            record(window.poll())
        else:
            parts = {(TOPIC, p) for p in op[1]}  # type: ignore[attr-defined]
            # Everything of these partitions still buffered is dropped; remember which.
            buffered = {r.source for r in ref.records}
            revoked |= {r for r in buffered if r.tp in parts}
            ref.revoke(parts)
            window.revoke(parts)
    add_run()
    ref.flush("shutdown", dnc)
    record(window.flush_all())
    for reason, _, _ in ref.batches:
        hyp_event(f"batch:{reason}")
    for audit in ref.audits:
        hyp_event(f"audit:{audit[1]}:{audit[2]}")
    if ref.rejects:
        hyp_event("reject")
    if ref.released:
        hyp_event("released")

    # The order of contacts inside one batch is unspecified (CXone does not care, and a
    # revoke may leave a contact at its first-seen place): compare each batch's contacts
    # as a sorted list; the sequence of batches and what each covers must match exactly.
    got_batches = [
        (b.flush_reason, sorted(c.event_id for c in b.contacts), frozenset(b.covered))
        for out in outputs for b in out.batches
    ]
    assert got_batches == [(reason, sorted(ids), covered) for reason, ids, covered in ref.batches]
    got_audits = Counter(
        (a.event.event_id, a.reason, a.stage, a.list_name, frozenset(a.covered))
        for out in outputs for a in out.audits
    )
    assert got_audits == Counter(ref.audits)
    got_rejects = Counter((r.event.event_id, frozenset(r.covered)) for out in outputs for r in out.rejects)
    assert got_rejects == Counter(ref.rejects)
    got_released = Counter(r for out in outputs for r in out.released)
    assert got_released == Counter(ref.released)

    # Every input record is accounted for exactly once.
    accounted: Counter[SourceRef] = Counter()
    for out in outputs:
        for b in out.batches:
            accounted.update(b.covered)
        for a in out.audits:
            accounted.update(a.covered)
        for r in out.rejects:
            accounted.update(r.covered)
        accounted.update(out.released)
    accounted.update(revoked)
    assert accounted == Counter(inputs)


def check_batch(batch: Batch, dnc: dict[str, str], max_items: int, max_bytes: int) -> None:
    ids = [c.contact_id for c in batch.contacts]
    assert len(ids) == len(set(ids)) and 0 < len(ids) <= max_items
    assert batch_payload_bytes(batch.contacts, ENVELOPE) <= max_bytes
    assert not any(c.phone_e164 in dnc for c in batch.contacts)
    assert all(c.opted_in for c in batch.contacts)
    assert {c.source for c in batch.contacts} <= set(batch.covered)
    assert len(batch.covered) == len(set(batch.covered))


def test_audit_outcome_is_frozen(clock: Clock) -> None:
    window = make_window(clock)
    (audit,) = window.add(make_event("a", 0, opted_in=False)).audits
    assert isinstance(audit, AuditOutcome)
    with pytest.raises(AttributeError):
        audit.reason = "x"  # type: ignore[misc]


def test_the_same_records_read_in_another_interleaving_make_the_same_body_and_key(clock: Clock) -> None:
    # A new owner after a kill re-reads two partitions in another interleaving: the batch must be
    # the same request under the same idempotency key (the sink refuses a key reused with another body).
    a = make_event("a", 0, partition=0, phone="+14155550100")
    b = make_event("b", 0, partition=1, phone="+14155550101")
    first, second = make_window(clock), make_window(clock)
    first.add_many([a, b])
    second.add_many([b, a])
    (one,), (two,) = first.flush_all().batches, second.flush_all().batches
    assert sent_item_list(one) == sent_item_list(two)
    assert one.idempotency_key() == two.idempotency_key()


def sent_item_list(batch: Batch) -> list[dict[str, object]]:
    return [sent_item(c) for c in batch.contacts]


# ---------------------------------------------------------------------------- calling hours


def test_an_opt_in_without_a_time_zone_is_refused_only_when_asked(clock: Clock) -> None:
    sending = make_window(clock, max_items=10)
    assert sending.add(make_event("a", 0)) is EMPTY and len(sending) == 1  # send: unknown is fine

    window = make_window(clock, max_items=10)
    window.refuse_unknown_time_zone = True
    out = window.add_many([make_event("a", 0, time_zone="America/Chicago"), make_event("b", 1),
                           make_event("c", 2, opted_in=False)])
    assert [(a.event.contact_id, a.reason, a.stage, a.list_name, a.covered) for a in out.audits] == [
        ("b", REASON_NO_TIME_ZONE, STAGE_ARRIVAL, None, (SourceRef(TOPIC, 0, 1),)),
        ("c", REASON_OPTED_OUT, STAGE_ARRIVAL, None, (SourceRef(TOPIC, 0, 2),)),  # an opt-out stays one
    ]
    assert len(window) == 1
    [batch] = window.flush_all().batches
    assert [(c.contact_id, c.time_zone) for c in batch.contacts] == [("a", "America/Chicago")]


def test_a_refused_write_supersedes_the_pending_opt_in_and_dnc_comes_first(clock: Clock) -> None:
    window = Window(WindowLimits(max_items=10), clock=clock, lookup_many=lookup_in({"+14155550199": "national"}),
                    refuse_unknown_time_zone=True)
    assert window.add(make_event("a", 0, time_zone="America/Chicago")) is EMPTY
    out = window.add_many([make_event("a", 1), make_event("b", 2, phone="+14155550199")])
    assert [(a.event.source.offset, a.reason, a.list_name) for a in out.audits] == [
        (0, REASON_SUPERSEDED, None), (1, REASON_NO_TIME_ZONE, None), (2, REASON_DNC, "national")]
    assert len(window) == 0 and window.flush_all() is EMPTY
