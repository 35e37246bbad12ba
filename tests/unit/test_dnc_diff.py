"""connector.core.dnc_diff: one list's keys from the topic, and the plan of a sync."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroaring import BitMap64

from connector.core.dnc_diff import ListKeys, keys_of, plan_changes, plan_full


def test_list_keys_follow_the_topic_order_and_skip_other_lists() -> None:
    keys = ListKeys("national")
    keys.feed([
        (b"national/+14155550100", False),
        (b"national/+14155550101", False),
        (b"crm-opt-out/+14155550102", False),
        (b"national/+14155550100", True),      # tombstone
        (b"national-2/+14155550103", False),   # another list sharing the prefix's letters
        (b"+14155550104", False),              # legacy bare key: its list is in the value
        (b"national/(415) 555-0105", False),   # this list, another spelling
        (b"national/+0123", False),
        (None, False),
        (b"national/+14155550101", False),     # written twice
    ])
    assert list(keys.numbers) == [14155550101]
    assert (keys.records, keys.legacy, keys.respelled) == (10, 1, 2)


def test_an_invalid_list_name_is_refused() -> None:
    with pytest.raises(ValueError):
        ListKeys("a/b")


def test_full_plan_adds_new_removes_unlisted_and_counts_the_rest() -> None:
    plan = plan_full(BitMap64([1_000, 1_001, 1_002]), BitMap64([1_001, 1_002, 1_003, 1_004]))
    assert list(plan.adds) == [1_000] and list(plan.removes) == [1_003, 1_004]
    assert (plan.unchanged, plan.after, plan.held) == (2, 3, 4)
    assert plan.removal_share == 0.5


def test_change_plan() -> None:
    plan = plan_changes(BitMap64([1, 2]), BitMap64([3, 4]), BitMap64([2, 3, 9]))
    assert list(plan.adds) == [1] and list(plan.removes) == [3]
    assert (plan.unchanged, plan.after) == (2, 3)  # 2 already held, 4 already absent
    with pytest.raises(ValueError):
        plan_changes(BitMap64([1]), BitMap64([1]), BitMap64())


def test_keys_of_writes_the_agreed_key_format() -> None:
    assert list(keys_of("national", [14155550100])) == [b"national/+14155550100"]


numbers = st.sets(st.integers(10_000_000_000, 10_000_000_050), max_size=30)


@given(numbers, numbers)
def test_applying_a_full_plan_leaves_exactly_the_file(listed: set[int], held: set[int]) -> None:
    plan = plan_full(BitMap64(listed), BitMap64(held))
    assert (held | set(plan.adds)) - set(plan.removes) == listed
    assert plan.after == len(listed) and plan.unchanged == len(listed & held)


@given(numbers, numbers, numbers)
def test_applying_a_change_plan(added: set[int], deleted: set[int], held: set[int]) -> None:
    deleted -= added
    plan = plan_changes(BitMap64(added), BitMap64(deleted), BitMap64(held))
    after = (held | set(plan.adds)) - set(plan.removes)
    assert after == (held | added) - deleted
    assert plan.after == len(after)
    assert plan.unchanged + len(plan.adds) + len(plan.removes) == len(added) + len(deleted)


@given(st.lists(st.tuples(st.sampled_from(["national", "other", "nat"]), st.integers(0, 9), st.booleans())))
def test_list_keys_agree_with_a_dict_replay(records: list[tuple[str, int, bool]]) -> None:
    keys = ListKeys("national")
    keys.feed((f"{name}/+1415555010{n}".encode(), tomb) for name, n, tomb in records)
    state: dict[int, bool] = {}
    for name, n, tomb in records:
        if name == "national":
            state[14155550100 + n] = not tomb
    assert set(keys.numbers) == {n for n, present in state.items() if present}
