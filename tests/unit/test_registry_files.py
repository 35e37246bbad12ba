"""connector.core.registry_files: full lists and change lists, line by line and as files."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.phones import PhoneNormalizer
from connector.core.registry_files import (
    ADD_ACTIONS,
    DELETE_ACTIONS,
    ChangeListParser,
    ColumnMap,
    FullListParser,
    InvalidLines,
    LineError,
    parse_date,
    parse_full_line,
)

NORMALISE = PhoneNormalizer("US", cache_size=0).normalize


@pytest.mark.parametrize(("line", "expected"), [
    ("415,5550100", 14155550100),
    ("415,5550100\r\n", 14155550100),
    ('  "212" , "3456789" ', 12123456789),
    ("", None),
    ("   \n", None),
])
def test_full_line_reads_the_registry_spelling(line: str, expected: int | None) -> None:
    assert parse_full_line(line, NORMALISE) == expected


@pytest.mark.parametrize(("line", "reason"), [
    ("4155550100", "format"),         # no comma
    ("415,555010", "format"),         # 6 digits
    ("41,55550100", "format"),
    ("415,555-0100", "format"),
    ("４１５,5550100", "area_code"),    # full-width digits are not ASCII
    ("123,4567890", "invalid"),       # area codes never start with 1
    ("415,5550100,x", "format"),
])
def test_full_line_rejects_with_a_reason(line: str, reason: str) -> None:
    with pytest.raises(LineError) as info:
        parse_full_line(line, NORMALISE)
    assert info.value.reason == reason
    assert line.strip() not in str(info.value) or not line.strip()


def test_full_list_file_counts_lines_skips_a_header_and_reports_line_numbers_only() -> None:
    invalid = InvalidLines(cap=1)
    seen: list[int] = []
    parser = FullListParser(NORMALISE, invalid, progress=seen.append, progress_every=2)
    parser.feed(["AreaCode,Number\n", "415,5550100\n", "\n", "415,5550100\n", "999,12\n",
                 "212,3456789\n", "123,4567890\n"], "a.txt")
    assert sorted(parser.numbers) == [12123456789, 14155550100]
    assert parser.lines == 6  # the header and five data lines; the blank one is not counted
    assert invalid.count == 2 and invalid.by_reason == {"format": 1, "invalid": 1}
    assert invalid.listed == [("a.txt", 5, "format")]  # capped at one
    assert seen == [2, 4, 6]


def test_a_digit_in_the_first_line_makes_it_data_not_a_header() -> None:
    parser = FullListParser(NORMALISE)
    parser.feed(["4x5,5550100\n", "415,5550100\n"], "f")
    assert parser.invalid.listed == [("f", 1, "area_code")]


@given(st.lists(st.text(max_size=40), max_size=30))
@settings(max_examples=300)
def test_arbitrary_lines_never_crash_the_full_parser(lines: list[str]) -> None:
    parser = FullListParser(NORMALISE)
    parser.feed(lines, "f")
    assert parser.invalid.count <= len(lines)
    assert all(10_000_000_000 < n < 20_000_000_000 for n in parser.numbers)  # +1 and ten digits


@given(st.integers(200, 999), st.integers(0, 9_999_999))
def test_every_full_line_the_parser_accepts_is_what_the_phone_module_accepts(area: int, number: int) -> None:
    e164 = f"+1{area:03d}{number:07d}"
    try:
        expected: int | None = int(NORMALISE(e164)[1:])
    except Exception:
        expected = None
    try:
        got: int | None = parse_full_line(f"{area:03d},{number:07d}", NORMALISE)
    except LineError:
        got = None
    assert got == expected


# -- change lists --------------------------------------------------------------------------


def test_column_map_parses_one_based_columns() -> None:
    assert ColumnMap.parse("number=2,action=5,date=1") == ColumnMap(number=1, action=4, date=0)
    assert ColumnMap.parse("area=1, number=2, action=3") == ColumnMap(number=1, action=2, date=None, area=0)


@pytest.mark.parametrize("spec", ["number=1", "number=1,action=1", "number=0,action=2", "phone=1,action=2",
                                  "number=1,action=2,number=3", "number", "number=x,action=2"])
def test_column_map_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        ColumnMap.parse(spec)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-30", dt.date(2026, 11, 30)), ("2026-11-30T08:00:00", dt.date(2026, 11, 30)),
    ("20261130", dt.date(2026, 11, 30)), ("11/30/2026", dt.date(2026, 11, 30)),
])
def test_dates(text: str, expected: dt.date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["2026-02-30", "30/11/26", "yesterday", "2026113", "13/01/2026"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(LineError, match="date"):
        parse_date(text)


def test_actions_are_case_insensitive_and_documented_sets_are_disjoint() -> None:
    assert not ADD_ACTIONS & DELETE_ACTIONS
    parser = ChangeListParser(NORMALISE)
    parser.feed(["number,action,date\n", "(415) 555-0100,ADD,2026-11-01\n", "212 345 6789,Delete,2026-11-02\n",
                 "+1 646 222 3344, a \n", "646-222-3345,Removed,\n"], "c.csv")
    added, deleted = parser.result()
    assert sorted(added) == [14155550100, 16462223344]
    assert sorted(deleted) == [12123456789, 16462223345]
    assert parser.invalid.count == 0 and parser.lines == 4
    assert (parser.first_date, parser.last_date) == (dt.date(2026, 11, 1), dt.date(2026, 11, 2))


def test_change_rows_with_moved_and_split_columns() -> None:
    parser = ChangeListParser(NORMALISE, ColumnMap.parse("date=1,area=2,number=3,action=4"))
    parser.feed(["2026-11-01,415,5550100,add\n", "2026-11-01,415,555010,add\n", "2026-11-01,415\n"], "c")
    added, _ = parser.result()
    assert list(added) == [14155550100]
    assert parser.invalid.listed == [("c", 2, "number"), ("c", 3, "columns")]


def test_invalid_change_rows_are_reported_by_line_and_reason_only() -> None:
    parser = ChangeListParser(NORMALISE)
    parser.feed(["4155550100,add\n", "4155550101,maybe\n", "4155550102,add,someday\n", "+44 20 7946 0958,add\n",
                 ",add\n", "x\x00y,add\n", "9" * 200_000 + ",add\n", "4155550103,add\n"], "c")
    assert parser.invalid.listed == [("c", 2, "action"), ("c", 3, "date"), ("c", 4, "not_us"), ("c", 5, "empty"),
                                     ("c", 6, "unparseable"), ("c", 7, "format")]  # 7: over csv's field limit
    added, _ = parser.result()
    assert list(added) == [14155550100, 14155550103]  # the line after a csv error is read
    assert "4155550101" not in repr(parser.invalid)


def test_last_line_wins_when_dates_are_in_order() -> None:
    parser = ChangeListParser(NORMALISE)
    parser.feed(["4155550100,add,2026-11-01\n", "4155550100,delete,2026-11-02\n",
                 "4155550101,delete,2026-11-02\n", "4155550101,add,2026-11-03\n"], "c")
    added, deleted = parser.result()
    assert parser.in_order
    assert list(added) == [14155550101] and list(deleted) == [14155550100]


def test_out_of_order_dates_keep_a_contested_number_added() -> None:
    parser = ChangeListParser(NORMALISE)
    parser.feed(["4155550100,delete,2026-11-03\n", "4155550100,add,2026-11-01\n",
                 "4155550101,add,2026-11-03\n", "4155550101,delete,2026-11-01\n",
                 "4155550102,delete,2026-11-02\n"], "c")
    added, deleted = parser.result()
    assert not parser.in_order
    assert sorted(added) == [14155550100, 14155550101]  # fail closed: both stay blocked
    assert list(deleted) == [14155550102]


@given(st.lists(st.text(max_size=60), max_size=30))
@settings(max_examples=300)
def test_arbitrary_lines_never_crash_the_change_parser(lines: list[str]) -> None:
    parser = ChangeListParser(NORMALISE, ColumnMap.parse("number=1,action=2,date=3"))
    parser.feed(lines, "c")
    added, deleted = parser.result()
    assert not added.intersect(deleted)
    assert parser.invalid.count <= parser.lines


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.integers(1, 28)), max_size=40))
def test_change_result_is_disjoint_and_in_order_matches_last_line(rows: list[tuple[int, bool, int]]) -> None:
    parser = ChangeListParser(NORMALISE)
    lines = [f"415555010{n},{'add' if add else 'delete'},2026-11-{day:02d}\n" for n, add, day in rows]
    parser.feed(lines, "c")
    added, deleted = parser.result()
    last: dict[int, bool] = {}
    for n, add, _ in rows:
        last[14155550100 + n] = add
    assert not added.intersect(deleted)
    assert set(added) | set(deleted) == set(last)
    if parser.in_order:
        assert set(added) == {n for n, add in last.items() if add}
    else:
        assert set(added) >= {n for n, add in last.items() if add}  # never fewer blocked
