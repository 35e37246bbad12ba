"""connector.core.ingest: the ingest decisions, fed with values (no broker, no loop)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.ingest import OK, STAGE_SEND, Consumed, Effects, IngestCore
from connector.core.models import SourceRef, pack_details
from connector.core.windowing import WindowLimits

TOPIC = "crm.contacts.optin"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Dnc:
    def __init__(self) -> None:
        self.blocked: dict[str, str] = {}

    def __call__(self, numbers: Sequence[str]) -> Mapping[str, str]:
        return {n: self.blocked[n] for n in numbers if n in self.blocked}


def core(clock: Clock, dnc: Dnc, **kw: object) -> IngestCore:
    limits = WindowLimits(max_items=kw.pop("max_items", 100), max_bytes=1_000_000, max_age_s=5.0)  # type: ignore[arg-type]
    c = IngestCore(limits, clock=clock, lookup_many=dnc, max_unsettled=kw.pop("max_unsettled", 1000),  # type: ignore[arg-type]
                   **kw)  # type: ignore[arg-type]
    c.assign([(TOPIC, 0), (TOPIC, 1)])
    return c


def record(partition: int, offset: int, contact: str, phone: str, opted_in: bool = True) -> Consumed:
    details = pack_details(f"e{offset}", "Ann", None, None, {}, 0, "crm")
    return Consumed(SourceRef(TOPIC, partition, offset), contact.encode(), b"raw", [], 0,
                    (OK, contact, phone, opted_in, 100, details))


def bad(partition: int, offset: int) -> Consumed:
    return Consumed(SourceRef(TOPIC, partition, offset), b"k", b"\x01", [], 0,
                    ("decode", "connector.errors.SerdeError", "truncated", "decode"))


def feed(c: IngestCore, records: Sequence[Consumed]) -> Effects:
    by_tp: dict[tuple[str, int], list[int]] = {}
    for r in records:
        by_tp.setdefault(r.ref.tp, []).append(r.ref.offset)
    for tp, offsets in by_tp.items():
        c.track(tp, offsets)
    return c.receive(c.generation, records)


def test_an_older_opt_in_never_overtakes_a_newer_opt_out_of_the_same_contact() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc)
    out = feed(c, [record(0, 0, "c1", "+14155550100"), record(0, 1, "c1", "+14155550100", opted_in=False)])
    assert [a.reason for a in out.audits] == ["OPTED_OUT", "OPTED_OUT"]  # the cancelled opt-in, the opt-out
    assert not c.flush_all().batches


def test_dead_letters_come_first_with_their_reason_and_settle_only_their_record() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc)
    out = feed(c, [bad(0, 0), record(0, 1, "c1", "+14155550100")])
    assert [(d.stage, d.reason, d.covered) for d in out.dead_letters] == [
        ("decode", "decode", (SourceRef(TOPIC, 0, 0),))]
    assert out.decoded == 1
    c.settle(out.dead_letters[0].covered)
    assert c.committable() == {(TOPIC, 0): 1}  # offset 1 waits for its batch


def test_records_of_a_partition_revoked_while_decoding_are_dropped() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc)
    records = [record(0, 0, "c1", "+14155550100"), record(1, 0, "c2", "+14155550101")]
    c.track((TOPIC, 0), [0])
    c.track((TOPIC, 1), [0])
    generation = c.generation
    committable, _ = c.revoke([(TOPIC, 1)])
    assert committable == {}
    out = c.receive(generation, records)
    assert out.decoded == 1
    batch = c.flush_all().batches[0]
    assert [x.contact_id for x in batch.contacts] == ["c1"]


def test_a_contact_added_to_dnc_after_the_flush_is_pruned_at_send_and_audited() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc)
    feed(c, [record(0, 0, "c1", "+14155550100"), record(0, 1, "c2", "+14155550101")])
    batch = c.flush_all().batches[0]
    dnc.blocked["+14155550101"] = "national"
    pruned, audits = c.prune(batch, dnc([x.phone_e164 for x in batch.contacts]))
    assert pruned is not None and [x.contact_id for x in pruned.contacts] == ["c1"]
    assert [(a.reason, a.list_name, a.stage, a.label) for a in audits] == [("DNC", "national", STAGE_SEND,
                                                                            "dnc_at_send")]
    assert pruned.covered == batch.covered  # the removed contact's record settles with the batch
    assert pruned.idempotency_key() != batch.idempotency_key()
    same, none = c.prune(batch, {})
    assert same is batch and none == []


def test_a_batch_whose_every_contact_joined_dnc_is_not_sent() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc)
    feed(c, [record(0, 0, "c1", "+14155550100")])
    batch = c.flush_all().batches[0]
    pruned, audits = c.prune(batch, {"+14155550100": "national"})
    assert pruned is None and len(audits) == 1
    c.settle_batch(batch)
    assert c.unsettled == 0 and c.committable() == {(TOPIC, 0): 1}


def test_flow_pauses_on_unsettled_and_queued_batches_and_resumes_under_the_mark() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc, max_unsettled=10, max_items=2, max_queued_batches=2)
    c.track((TOPIC, 0), list(range(10)))
    assert c.flow() is True and c.flow() is None
    c.settle([SourceRef(TOPIC, 0, o) for o in range(10)])
    assert c.flow() is False
    feed(c, [record(0, 10 + i, f"c{i}", f"+1415555{i:04d}") for i in range(4)])  # two full batches
    assert c.queued == 2 and c.flow() is True
    taken = c.take_batch()
    assert taken is not None and c.queued == 2  # handed over, not yet in delivery's hands
    c.handed_over()
    assert c.queued == 1 and c.flow() is False


def test_stalled_for_counts_only_while_records_wait_and_nothing_settles() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc)
    assert c.stalled_for() == 0.0
    c.track((TOPIC, 0), [0, 1])
    clock.now += 30
    assert c.stalled_for() == 30
    c.settle([SourceRef(TOPIC, 0, 0)])
    assert c.stalled_for() == 0
    clock.now += 5
    assert c.stalled_for() == 5
    c.settle([SourceRef(TOPIC, 0, 1)])
    clock.now += 100
    assert c.stalled_for() == 0.0


def test_releases_report_every_flushed_number_when_a_dnc_group_is_used() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc, release_on_flush=True)
    feed(c, [record(0, 0, "c1", "+14155550100")])
    assert c.flush_all().releases == ["+14155550100"]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(["c1", "c2", "c3"]), st.booleans()),
                min_size=1, max_size=30))
def test_every_record_is_settled_exactly_once_by_what_the_core_returns(
        events: list[tuple[int, str, bool]]) -> None:
    clock, dnc = Clock(), Dnc()
    dnc.blocked["+14155550102"] = "national"
    c = core(clock, dnc, max_items=3)
    offsets = {0: 0, 1: 0}
    records = []
    for partition, contact, opted_in in events:
        records.append(record(partition, offsets[partition], contact, f"+1415555010{contact[-1]}", opted_in))
        offsets[partition] += 1
    outs = [feed(c, records), c.flush_all()]
    settled: list[SourceRef] = []
    for out in outs:
        for audit in out.audits:
            settled += audit.covered
        for batch in out.batches:
            settled += batch.covered
    assert sorted(settled) == sorted(r.ref for r in records)
    for out in outs:
        for audit in out.audits:
            c.settle(audit.covered)
        for batch in out.batches:
            c.settle_batch(batch)
    assert c.unsettled == 0
    assert c.committable() == {(TOPIC, p): n for p, n in offsets.items() if n}


def located(partition: int, offset: int, contact: str, phone: str, zone: str, source: str) -> Consumed:
    """A record as the decoder gives it with its time zone and the zone's source."""
    details = pack_details(f"e{offset}", "Ann", None, None, {}, 0, "crm")
    return Consumed(SourceRef(TOPIC, partition, offset), contact.encode(), b"raw", [], 0,
                    (OK, contact, phone, True, 100, details, zone, source))


def test_time_zones_reach_the_batch_and_their_sources_are_counted() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc)
    out = feed(c, [located(0, 0, "c1", "+14155550100", "America/Chicago", "zip"),
                   located(0, 1, "c2", "+14155550101", "America/Los_Angeles", "number"),
                   located(0, 2, "c3", "+14155550102", "America/Denver", "zip"),
                   located(0, 3, "c4", "+14155550103", "", "unknown"),
                   record(0, 4, "c5", "+14155550104")])  # a tuple without a zone: not counted
    assert out.time_zone_sources == {"zip": 2, "number": 1, "unknown": 1}
    [batch] = c.flush_all().batches
    assert [(x.contact_id, x.time_zone, x.time_zone_source) for x in batch.contacts] == [
        ("c1", "America/Chicago", "zip"), ("c2", "America/Los_Angeles", "number"), ("c3", "America/Denver", "zip"),
        ("c4", "", "unknown"), ("c5", "", "")]


def test_refusing_unknown_time_zones_audits_them_and_a_superseded_opt_in_takes_that_reason() -> None:
    clock, dnc = Clock(), Dnc()
    c = core(clock, dnc, refuse_unknown_time_zone=True)
    first = feed(c, [located(0, 0, "c1", "+14155550100", "America/Chicago", "zip")])
    assert not first.audits
    out = feed(c, [located(0, 1, "c1", "+14155550100", "", "unknown"),
                   located(0, 2, "c2", "+14155550101", "", "unknown")])
    assert [(a.event.source.offset, a.reason, a.label, a.stage, a.opt_out) for a in out.audits] == [
        (0, "NO_TIME_ZONE", "SUPERSEDED", "ARRIVAL", False), (1, "NO_TIME_ZONE", "NO_TIME_ZONE", "ARRIVAL", False),
        (2, "NO_TIME_ZONE", "NO_TIME_ZONE", "ARRIVAL", False)]
    assert out.time_zone_sources == {"unknown": 2}
    for audit in out.audits:  # settled once their audit records are acknowledged
        c.settle(audit.covered)
    assert c.committable() == {(TOPIC, 0): 3} and not c.flush_all().batches
