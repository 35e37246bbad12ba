"""Unit tests for connector.core.dnc_table: add/remove/re-list/lookup, tombstones, ints, memory."""

from __future__ import annotations

import platform
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.dnc_table import DncTable, e164_to_int, int_to_e164
from connector.ops.runtime import DEFAULT_MMAP_THRESHOLD, pin_mmap_threshold


def test_add_lookup_contains_len() -> None:
    table = DncTable()
    assert table.lookup("+14155550123") is None
    table.add("+14155550123", "national")
    table.add("+442079460958", "internal")
    assert table.lookup("+14155550123") == "national"
    assert table.lookup("+442079460958") == "internal"
    assert "+14155550123" in table
    assert "+14155550124" not in table
    assert "garbage" not in table and 14155550123 not in table
    assert len(table) == 2
    assert table.list_sizes() == {"national": 1, "internal": 1}


def test_tombstone_removes_and_re_add_works() -> None:
    table = DncTable()
    table.add("+14155550123", "national")
    table.remove("+14155550123")
    assert table.lookup("+14155550123") is None
    assert len(table) == 0
    table.remove("+14155550123")  # absent: no effect
    table.add("+14155550123", "crm-opt-out")
    assert table.lookup("+14155550123") == "crm-opt-out"


def test_re_list_moves_number_to_new_list() -> None:
    table = DncTable()
    table.add("+14155550123", "a")
    table.add("+14155550123", "b")
    assert table.lookup("+14155550123") == "b"
    assert table.list_sizes() == {"a": 0, "b": 1}
    assert len(table) == 1


def test_add_many_later_pairs_win_across_lists() -> None:
    table = DncTable()
    n = 14155550000
    # Interleaved short runs and one large run, re-listing numbers between lists.
    pairs = [(n + i, "a") for i in range(2000)]
    pairs += [(n + 1, "b"), (n + 2, "c"), (n + 1, "a")]
    pairs += [(n + i, "b") for i in range(1000, 3000)]
    assert table.add_many(pairs) == len(pairs)
    assert table.lookup("+14155550001") == "a"
    assert table.lookup("+14155550002") == "c"
    assert table.lookup_int(n + 999) == "a"
    assert table.lookup_int(n + 1000) == "b"
    assert table.lookup_int(n + 2999) == "b"
    assert len(table) == 3000
    table.remove_many(range(n, n + 500))
    assert len(table) == 2500
    assert table.lookup("+14155550002") is None


@given(st.lists(st.tuples(st.sampled_from(["add", "del"]), st.integers(0, 30), st.sampled_from("abc")),
                max_size=80), st.booleans())
def test_matches_a_dict_model(ops: list[tuple[str, int, str]], bulk: bool) -> None:
    table = DncTable()
    model: dict[int, str] = {}
    base = 33142685300
    pending: list[tuple[int, str]] = []
    for op, i, name in ops:
        number = base + i
        if op == "add":
            model[number] = name
            if bulk:
                pending.append((number, name))
            else:
                table.add(int_to_e164(number), name)
        else:
            if pending:
                table.add_many(pending)
                pending = []
            model.pop(number, None)
            table.remove(int_to_e164(number))
    table.add_many(pending)
    assert len(table) == len(model)
    for i in range(31):
        assert table.lookup_int(base + i) == model.get(base + i)


@pytest.mark.parametrize("bad", ["", "+", "14155550123", "+0123", "+1", "+1234567890123456",
                                 "+1415555012a", "+１４１５", "+1 415", " +14155550123"])
def test_e164_to_int_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="E.164"):
        e164_to_int(bad)
    table = DncTable()
    with pytest.raises(ValueError):
        table.lookup(bad)
    with pytest.raises(ValueError):
        table.add(bad, "x")


@given(st.from_regex(r"\A\+[1-9][0-9]{1,14}\Z"))
def test_int_round_trip(e164: str) -> None:
    assert int_to_e164(e164_to_int(e164)) == e164


def test_int_to_e164_bounds() -> None:
    with pytest.raises(ValueError):
        int_to_e164(9)
    with pytest.raises(ValueError):
        int_to_e164(10**15)
    assert int_to_e164(10) == "+10"


def test_100k_numbers_stay_small() -> None:
    rng = random.Random(7)
    area_codes = rng.sample(range(201, 990), 50)
    numbers = {10_000_000_000 + rng.choice(area_codes) * 10_000_000 + rng.randrange(2_000_000, 10_000_000)
               for _ in range(100_000)}
    table = DncTable()
    table.add_many((n, "national") for n in numbers)
    table.optimize()
    assert len(table) == len(numbers)
    sample = rng.sample(sorted(numbers), 100)
    assert all(table.lookup_int(n) == "national" for n in sample)
    per_number = table.memory_bytes() / len(table)
    # 100k spread over 50 area codes is sparser than a national list, yet stays far below a set.
    assert per_number < 8, per_number
    assert table.lookup_int(10_000_000_000 + area_codes[0] * 10_000_000 + 1) is None


@given(st.lists(st.tuples(st.sampled_from(["add", "del"]),
                          st.sampled_from([0, 1, 2, 2**32 - 1, 2**32, 2**33 + 5, 7 * 2**32 + 9]),
                          st.sampled_from("abc")), max_size=60))
def test_compact_keeps_the_table_across_high_words(ops: list[tuple[str, int, str]]) -> None:
    # Numbers on both sides of 32-bit boundaries: moves, tombstones, then a compaction.
    table = DncTable()
    model: dict[int, str] = {}
    base = 44_000_000_000
    for op, offset, name in ops:
        number = base + offset
        if op == "add":
            table.add_many([(number, name)])
            model[number] = name
        else:
            table.remove_int(number)
            model.pop(number, None)
    before = {number: table.lookup_int(number) for number in model}
    table.compact()
    assert len(table) == len(model)
    assert {number: table.lookup_int(number) for number in model} == before == model
    sizes = table.list_sizes()
    assert all(sizes.get(name, 0) == list(model.values()).count(name) for name in "abc")
    # still the live, mutable table
    table.add_int(base + 2**32, "z")
    assert table.lookup_int(base + 2**32) == "z"
    table.remove_int(base + 1)
    assert table.lookup_int(base + 1) is None


def test_bulk_runs_equal_single_adds_after_compaction() -> None:
    rng = random.Random(11)
    numbers = [rng.choice([1, 44, 49, 91]) * 10**10 + rng.randrange(10**10) for _ in range(20_000)]
    pairs = [(n, rng.choice(["a", "b"])) for n in numbers]
    bulk, single = DncTable(), DncTable()
    bulk.add_many(pairs[:12_000])
    bulk.remove_many(numbers[:500])
    bulk.add_many(pairs[12_000:])
    for number, name in pairs[:12_000]:
        single.add_int(number, name)
    for number in numbers[:500]:
        single.remove_int(number)
    for number, name in pairs[12_000:]:
        single.add_int(number, name)
    bulk.compact()
    assert bulk.list_sizes() == single.list_sizes()
    assert all(bulk.lookup_int(n) == single.lookup_int(n) for n in numbers)
    assert bulk.serialized_bytes() > 0 and bulk.memory_bytes() > 0


def test_pin_mmap_threshold_reports_glibc() -> None:
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert pin_mmap_threshold(DEFAULT_MMAP_THRESHOLD) is on_glibc


@given(
    listed=st.dictionaries(st.integers(10, 999_999_999_999_999), st.sampled_from(["a", "b", "c"]), max_size=40),
    asked=st.lists(st.integers(10, 999_999_999_999_999), max_size=40),
)
def test_lookup_many_agrees_with_lookup(listed: dict[int, str], asked: list[int]) -> None:
    table = DncTable()
    for number, name in listed.items():
        table.add_int(number, name)
    numbers = [int_to_e164(n) for n in [*asked, *listed]] + ["garbage", "+"]
    expected = {e: table.lookup(e) for e in numbers if e[1:].isdigit()}  # "garbage" and "+" are not numbers
    assert table.lookup_many(numbers) == {e: name for e, name in expected.items() if name is not None}
