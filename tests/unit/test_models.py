"""Unit tests for connector.core.models: source ranges, deterministic batch ids, idempotency keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.core.models import Batch, ContactEvent, SourceRef, batch_id_for, offsets_by_partition, source_ranges


def _event(offset: int, contact: str = "c1") -> ContactEvent:
    return ContactEvent.of(
        source=SourceRef("t", 0, offset),
        key=contact.encode(),
        raw=b"raw",
        headers=[],
        produced_at_ms=0,
        event_id=f"e{offset}",
        contact_id=contact,
        phone_e164="+14155550123",
        opted_in=True,
        first_name=None,
        last_name=None,
        email=None,
        custom_fields={},
        changed_at_ms=0,
        source_system="crm",
    )


def test_source_ranges_split_on_gaps_and_partitions() -> None:
    refs = [SourceRef("t", 1, 5), SourceRef("t", 0, 3), SourceRef("t", 0, 1), SourceRef("t", 0, 2),
            SourceRef("t", 0, 7), SourceRef("a", 0, 9), SourceRef("t", 0, 2)]
    assert source_ranges(refs) == [("a", 0, 9, 9), ("t", 0, 1, 3), ("t", 0, 7, 7), ("t", 1, 5, 5)]
    assert source_ranges([]) == []


@given(st.sets(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2), st.integers(0, 50)), max_size=60))
def test_source_ranges_cover_exactly_the_refs(items: set[tuple[str, int, int]]) -> None:
    refs = [SourceRef(t, p, o) for t, p, o in items]
    runs = source_ranges(refs)
    expanded = {(t, p, o) for t, p, first, last in runs for o in range(first, last + 1)}
    assert expanded == items
    # Runs are maximal: two runs of one partition never touch.
    for (t1, p1, _, l1), (t2, p2, f2, _) in zip(runs, runs[1:], strict=False):
        if (t1, p1) == (t2, p2):
            assert f2 > l1 + 1


def test_batch_id_is_order_independent_and_content_dependent() -> None:
    refs = [SourceRef("t", 0, i) for i in range(10)]
    assert batch_id_for(refs) == batch_id_for(list(reversed(refs)))
    assert batch_id_for(refs) != batch_id_for(refs[:-1])
    assert batch_id_for(refs) != batch_id_for([SourceRef("t", 1, i) for i in range(10)])
    assert batch_id_for(refs).startswith("b-")


def test_batch_ranges_and_idempotency_key() -> None:
    covered = [SourceRef("t", 0, 4), SourceRef("t", 0, 5), SourceRef("t", 0, 8)]
    batch = Batch(batch_id_for(covered), [_event(5), _event(8, "c2")], covered, "size", 1.0)
    assert batch.attempt == 1
    assert batch.source_ranges() == [("t", 0, 4, 5), ("t", 0, 8, 8)]
    key = batch.idempotency_key()
    assert len(key) == 64 and int(key, 16) >= 0
    # Stable for the same records and body (a rebuilt batch after restart), different per
    # attempt, and different when the body is (a contact removed by the send-time check).
    again = Batch(batch_id_for(list(reversed(covered))), [_event(8, "c2"), _event(5)], list(covered), "age", 2.0)
    assert again.idempotency_key() == key
    again.attempt = 2
    assert again.idempotency_key() != key
    fewer = Batch(batch.batch_id, [_event(5)], list(covered), "size", 1.0)
    assert fewer.idempotency_key() != key


def test_source_ref_is_frozen_and_hashable() -> None:
    ref = SourceRef("t", 2, 3)
    assert ref.tp == ("t", 2)
    assert {ref, SourceRef("t", 2, 3)} == {ref}


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3), st.integers(0, 50)), max_size=40))
def test_batch_of_derives_id_and_offsets_from_covered(items: list[tuple[str, int, int]]) -> None:
    refs = [SourceRef(*item) for item in items]
    batch = Batch.of([], refs, "size", 1.0)
    assert batch.batch_id == batch_id_for(refs)
    assert batch.covered_offsets() == offsets_by_partition(refs) == {
        (t, p): sorted({o for t2, p2, o in items if (t2, p2) == (t, p)}) for t, p, _ in items}
    assert batch.source_ranges() == source_ranges(refs)
    plain = Batch(batch.batch_id, [], refs, "size", 1.0)  # offsets computed on first use
    assert plain.offsets is None and plain.covered_offsets() == batch.covered_offsets()


def test_contact_event_packs_its_details_and_unpacks_them_on_first_read() -> None:
    event = ContactEvent.of(SourceRef("t", 1, 2), b"k", b"raw", [("h", b"v")], 3, "e1", "c1", "+14155550123",
                            True, "Ada", None, "ada@example.com", {"tier": "gold"}, 1_700_000_000_000, "crm", 99)
    assert isinstance(event.details, bytes)
    assert (event.event_id, event.first_name, event.last_name, event.email, event.custom_fields,
            event.changed_at_ms, event.source_system) == (
        "e1", "Ada", None, "ada@example.com", {"tier": "gold"}, 1_700_000_000_000, "crm")
    assert (event.source, event.key, event.raw, event.headers, event.produced_at_ms, event.contact_id,
            event.phone_e164, event.opted_in, event.item_bytes) == (
        SourceRef("t", 1, 2), b"k", b"raw", [("h", b"v")], 3, "c1", "+14155550123", True, 99)
    event.custom_fields["tier"] = "changed"  # a copy
    assert event.custom_fields == {"tier": "gold"}
    # the decoder's form: the same event
    same = ContactEvent(event.source, b"k", b"raw", [("h", b"v")], 3, "c1", "+14155550123", True, 99, event.details)
    assert same == event and same != _event(2)
    assert "4155550123" not in repr(event) and "Ada" not in repr(event) and "c1" in repr(event)
