"""connector.core.dnc_table: a number on several lists, bare-key entries, expiry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.dnc_table import BARE, DncTable, TableOp, e164_to_int

A = e164_to_int("+14155550100")
B = e164_to_int("+14155550101")


def test_a_number_on_two_lists_stays_blocked_after_one_tombstone_and_is_released_after_both() -> None:
    table = DncTable()
    table.put_many("crm-opt-out", "crm-opt-out", [A])
    table.put_many("national", "national", [A])
    assert table.lists_of("+14155550100") == ("crm-opt-out", "national")
    table.delete_many("national", [A])  # the registry drops the number
    assert table.lookup("+14155550100") == "crm-opt-out"
    assert table.lists_of("+14155550100") == ("crm-opt-out",)
    table.delete_many("crm-opt-out", [A])
    assert table.lookup("+14155550100") is None
    assert table.lists_of("+14155550100") == ()
    assert len(table) == 0


def test_the_window_gets_one_list_per_number_the_first_by_name_whatever_the_order() -> None:
    one, other = DncTable(), DncTable()
    for name in ("national", "crm-opt-out", "internal"):
        one.put_many(name, name, [A])
    for name in ("internal", "national", "crm-opt-out"):
        other.put_many(name, name, [A])
    assert one.lookup_many(["+14155550100", "+14155550101"]) == {"+14155550100": "crm-opt-out"}
    assert other.lookup_many(["+14155550100"]) == one.lookup_many(["+14155550100"])
    assert one.lookup_int(A) == other.lookup_int(A) == "crm-opt-out"
    assert len(one) == 1 and one.entries() == 3


def test_a_later_bare_key_record_moves_the_number_among_bare_key_entries_only() -> None:
    table = DncTable()
    table.put_many("crm-opt-out", "crm-opt-out", [A])  # keyed: crm-opt-out/+14155550100
    table.add("+14155550100", "national")               # bare key, value names national
    assert table.lists_of("+14155550100") == ("crm-opt-out", "national")
    table.add("+14155550100", "internal")               # the same bare key again: moved
    assert table.lists_of("+14155550100") == ("crm-opt-out", "internal")
    table.remove("+14155550100")                        # the bare tombstone: what the bare key added
    assert table.lists_of("+14155550100") == ("crm-opt-out",)
    table.delete_many("crm-opt-out", [A])
    assert table.lookup("+14155550100") is None


def test_a_keyed_record_never_touches_a_bare_key_entry_of_the_same_list() -> None:
    # The migration: write national/+1..., then tombstone the bare key; blocked throughout.
    table = DncTable()
    table.add("+14155550100", "national")
    table.put_many("national", "national", [A])
    table.remove("+14155550100")
    assert table.lookup("+14155550100") == "national"
    table.delete_many("national", [A])
    assert table.lookup("+14155550100") is None


def test_an_unreadable_value_replaces_its_key_s_entry_and_a_good_one_replaces_it_back() -> None:
    table = DncTable()
    table.apply([TableOp("national", "national", [A])])
    table.apply([TableOp("national", "unreadable", [A])])
    assert table.lists_of_int(A) == ("unreadable",)
    table.apply([TableOp("national", "national", [A])])
    assert table.lists_of_int(A) == ("national",)
    table.apply([TableOp("national", "unreadable", [A]), TableOp("national", None, [A])])
    assert table.lists_of_int(A) == ()


def test_expiry_removes_one_list_s_entry_at_its_time() -> None:
    table = DncTable()
    table.put_many("national", "national", [A, B])
    table.put_many("temporary", "temporary", [A], expires_ms=1_000)
    assert table.expiring() == 1
    assert table.expire(999) == 0
    assert table.lists_of_int(A) == ("national", "temporary")
    assert table.expire(1_000) == 1
    assert table.lists_of_int(A) == ("national",)  # blocked by one list, expired on the other
    assert table.expiring() == 0


def test_a_later_record_without_expiry_cancels_the_expiry_and_a_tombstone_forgets_it() -> None:
    table = DncTable()
    table.put_many("a", "a", [A], expires_ms=10)
    table.put_many("a", "a", [A])  # the same key again, no expiry: blocks for good
    table.put_many("b", "b", [B], expires_ms=10)
    table.delete_many("b", [B])
    table.put_many("b", "b", [B])  # re-added without an expiry after its tombstone
    assert table.expire(10**15) == 0
    assert table.lookup_int(A) == "a" and table.lookup_int(B) == "b"


def test_an_expiry_moved_to_a_later_time_is_the_one_that_counts() -> None:
    table = DncTable()
    table.put_many("a", "a", [A], expires_ms=10)
    table.put_many("a", "a", [A], expires_ms=20)
    assert table.expire(15) == 0 and table.lookup_int(A) == "a"
    assert table.expire(20) == 1 and table.lookup_int(A) is None


def test_the_expiry_heap_stays_bounded_when_one_entry_is_rewritten_again_and_again() -> None:
    table = DncTable()
    for i in range(5_000):
        table.put_many("a", "a", [A], expires_ms=10**12 + i)
    assert table.expiring() == 1
    assert len(table._expiry.heap) < 2 * 1 + 1024 + 2


# --------------------------------------------------------------------------- the model

CLASSES = [BARE, "a", "b"]
TARGETS = ["a", "b", "unreadable"]
NUMBERS = [A, B, A + 2**32, 2**32 - 1, 44_000_000_000]

op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(CLASSES), st.sampled_from(TARGETS),
              st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=4),
              st.one_of(st.none(), st.integers(0, 50))),
    st.tuples(st.just("delete"), st.sampled_from(CLASSES), st.lists(st.sampled_from(NUMBERS), max_size=3)),
    st.tuples(st.just("expire"), st.integers(0, 60)),
)


@settings(max_examples=300)
@given(st.lists(op, max_size=40))
def test_the_table_matches_a_model_of_entries(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    table = DncTable()
    # (key class, number) -> (target, expires_ms or None)
    model: dict[tuple[str, int], tuple[str, int | None]] = {}
    for step in ops:
        if step[0] == "put":
            _, cls, target, numbers, expires = step
            table.apply([TableOp(cls, target, list(numbers), expires)])
            for n in numbers:
                model[(cls, n)] = (target, expires)
        elif step[0] == "delete":
            _, cls, numbers = step
            table.apply([TableOp(cls, None, list(numbers))])
            for n in numbers:
                model.pop((cls, n), None)
        else:
            now = step[1]
            expected = sum(1 for _, exp in model.values() if exp is not None and exp <= now)
            assert table.expire(now) == expected
            model = {k: v for k, v in model.items() if v[1] is None or v[1] > now}
    for n in NUMBERS:
        lists = tuple(sorted({target for (_, m), (target, _) in model.items() if m == n}))
        assert table.lists_of_int(n) == lists
        assert table.lookup_int(n) == (lists[0] if lists else None)
    assert len(table) == len({n for _, n in model})
    assert table.entries() == len(model)
    assert table.expiring() == sum(1 for _, exp in model.values() if exp is not None)
