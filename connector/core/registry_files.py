"""Reading the National DNC Registry's download files: full lists and change lists.

Pure: the lines come from the caller (plain or unzipped, :mod:`connector.cli.dnc_sync`), the
numbers are checked by an injected normaliser (the US
:meth:`connector.core.phones.PhoneNormalizer.normalize`), and what is read is kept as the
integers of the E.164 digits in :class:`pyroaring.BitMap64` sets: a registry of 258 million
numbers costs a few bytes per number, never a Python set of strings.

**Full list** (:class:`FullListParser`): one ``area code,number`` per line, for example
``415,5550100`` (3 and 7 ASCII digits, spaces around either and double quotes around each
are allowed), read as ``+14155550100``. Blank lines are skipped; so is a first line without
any digit (a header).

**Change list** (:class:`ChangeListParser`): the registry's exact layout is not confirmed
here, so it is read as CSV, ``number,action[,date]`` by default, with the columns movable
(:meth:`ColumnMap.parse`, ``number=2,action=5,date=1``; 1-based), or the number split as
``area=1,number=2``. The number may be spelled in any US form (``4155550100``,
``(415) 555-0100``, ``+1 415 555 0100``). Actions, case-insensitive: :data:`ADD_ACTIONS` and
:data:`DELETE_ACTIONS`. Dates: :func:`parse_date`. A first row whose action cell is no
action and whose number cell has no digit is a header and skipped.

Within one change file the last line of a number wins. When the file's dates are not in
order (a line dated before an earlier one), which line is the latest is not known from the
order, so a number both added and deleted in that file is kept **added** (fail closed).

Invalid lines are recorded by line number and reason only (:class:`InvalidLines`), never
with what they held.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyroaring import BitMap64

from connector.errors import PhoneError

#: ``normalise(spelling) -> E.164``; raises :class:`connector.errors.PhoneError` when invalid.
Normalise = Callable[[str], str]
#: Called with the lines read so far, every :attr:`FullListParser.progress_every` lines.
Progress = Callable[[int], None]

#: Invalid lines listed one by one at most; beyond that they are only counted.
MAX_LISTED = 1000
#: Actions that put a number on the list (compared in lower case).
ADD_ACTIONS = frozenset({"add", "added", "a", "insert", "new"})
#: Actions that take a number off the list (compared in lower case).
DELETE_ACTIONS = frozenset({"delete", "deleted", "del", "d", "remove", "removed", "r"})
#: How many lines pass between two progress calls.
PROGRESS_EVERY = 65_536

_FULL_LINE = re.compile(r'^\s*"?\s*([0-9]{3})\s*"?\s*,\s*"?\s*([0-9]{7})\s*"?\s*$')
_COLUMN_NAMES = ("number", "action", "date", "area")
_MAX_COLUMN = 64


@dataclass
class InvalidLines:
    """Rejected lines: the first ``cap`` as ``(source, line number, reason)``, all counted.

    Attributes:
        cap: how many are listed one by one.
        count: every rejected line.
        listed: the first ``cap`` of them.
        by_reason: counts per reason code.
    """

    cap: int = MAX_LISTED
    count: int = 0
    listed: list[tuple[str, int, str]] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, source: str, line: int, reason: str) -> None:
        """Record one rejected line (its place and reason, nothing of its content)."""
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if len(self.listed) < self.cap:
            self.listed.append((source, line, reason))


class LineError(ValueError):
    """A line that holds no valid number or action.

    Attributes:
        reason: a bounded code: ``format``, ``area_code``, ``number``, ``action``, ``date``,
            ``columns``, or a :class:`connector.errors.PhoneError` reason (``invalid``,
            ``not_possible``, ...). Never the line's content.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid line: {reason}")
        self.reason = reason


def us_e164(area: str, number: str, normalise: Normalise) -> int:
    """The E.164 digits (as an int) of a US ``area`` code and 7-digit ``number``.

    Raises:
        LineError: not 3 and 7 ASCII digits (``area_code``, ``number``), or not a valid
            number (the normaliser's reason).
    """
    if len(area) != 3 or not (area.isascii() and area.isdigit()):
        raise LineError("area_code")
    if len(number) != 7 or not (number.isascii() and number.isdigit()):
        raise LineError("number")
    return _checked("+1" + area + number, normalise)


def _checked(spelling: str, normalise: Normalise) -> int:
    try:
        e164 = normalise(spelling)
    except PhoneError as exc:
        raise LineError(exc.reason) from None
    if not e164.startswith("+1"):
        raise LineError("not_us")
    return int(e164[1:])


def parse_full_line(line: str, normalise: Normalise) -> int | None:
    """One line of a full list: the number's E.164 digits, or None for a blank line.

    Raises:
        LineError: the line is not ``area code,number`` or not a valid US number.
    """
    text = line.strip()
    if not text:
        return None
    if len(text) == 11 and text[3] == ",":  # the registry's own spelling: 415,5550100
        return us_e164(text[:3], text[4:], normalise)
    match = _FULL_LINE.match(text)
    if match is None:
        raise LineError("format")
    return us_e164(match.group(1), match.group(2), normalise)


class FullListParser:
    """Reads full-list files into one set of numbers.

    Args:
        normalise: checks each number (the US phone normaliser).
        invalid: where rejected lines are recorded (a new one by default).
        progress: called with the lines read so far every ``progress_every`` lines.
        progress_every: see ``progress``.

    Attributes:
        numbers: the E.164 digits of every valid number read.
        lines: non-blank lines read (headers included).
    """

    def __init__(self, normalise: Normalise, invalid: InvalidLines | None = None, *,
                 progress: Progress | None = None, progress_every: int = PROGRESS_EVERY) -> None:
        self._normalise = normalise
        self.invalid = invalid if invalid is not None else InvalidLines()
        self._progress = progress
        self._every = max(1, progress_every)
        self.numbers = BitMap64()
        self.lines = 0

    def feed(self, lines: Iterable[str], source: str) -> None:
        """Read every line of one file (``source`` names it in the invalid-line report)."""
        pending: list[int] = []
        first = True
        next_report = self.lines + self._every
        for lineno, line in enumerate(lines, 1):
            try:
                number = parse_full_line(line, self._normalise)
            except LineError as exc:
                if not (first and not any(c.isdigit() for c in line)):  # a first line without digits: a header
                    self.invalid.add(source, lineno, exc.reason)
                number = -1
            if number is None:
                continue
            first = False
            self.lines += 1
            if number >= 0:
                pending.append(number)
            if self.lines >= next_report:
                next_report = self.lines + self._every
                self.numbers.update(pending)
                pending.clear()
                if self._progress is not None:
                    self._progress(self.lines)
        self.numbers.update(pending)


@dataclass(frozen=True)
class ColumnMap:
    """Where the fields of a change list are (0-based column indexes).

    Attributes:
        number: the number, in any US spelling (or its 7 digits when ``area`` is set).
        action: the action (:data:`ADD_ACTIONS`, :data:`DELETE_ACTIONS`).
        date: the change's date (optional in every row), or None when there is none.
        area: the area code, when the number is split in two columns.
    """

    number: int = 0
    action: int = 1
    date: int | None = 2
    area: int | None = None

    @classmethod
    def parse(cls, spec: str) -> ColumnMap:
        """``number=2,action=5,date=1`` (1-based; ``area=N`` splits the number; a field left
        out keeps its default, except ``date``, which is then absent).

        Raises:
            ValueError: an unknown name, a column that is not a positive number, two fields
                in one column, or no ``number``/``action``.
        """
        chosen: dict[str, int] = {}
        for part in spec.split(","):
            name, sep, value = part.strip().partition("=")
            name = name.strip().lower()
            if not sep or name not in _COLUMN_NAMES or name in chosen:
                raise ValueError(f"expected NAME=COLUMN with NAME in {', '.join(_COLUMN_NAMES)}, once each")
            if not value.strip().isdigit() or not 1 <= int(value) <= _MAX_COLUMN:
                raise ValueError(f"column of {name} must be a number from 1 to {_MAX_COLUMN}")
            chosen[name] = int(value) - 1
        if "number" not in chosen or "action" not in chosen:
            raise ValueError("the columns must name at least number and action")
        if len(set(chosen.values())) != len(chosen):
            raise ValueError("two fields cannot share a column")
        return cls(chosen["number"], chosen["action"], chosen.get("date"), chosen.get("area"))


def parse_date(text: str) -> dt.date:
    """A change's date: ``YYYY-MM-DD`` (optionally followed by a time), ``YYYYMMDD`` or
    ``MM/DD/YYYY``.

    Raises:
        LineError: ``date``, for anything else or an impossible date.
    """
    text = text.strip()
    try:
        if len(text) >= 10 and text[4] == "-":
            return dt.date.fromisoformat(text[:10])
        if len(text) == 8 and text.isascii() and text.isdigit():
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        month, day, year = text.split("/")
        if len(year) == 4:
            return dt.date(int(year), int(month), int(day))
    except ValueError:
        pass
    raise LineError("date")


def parse_action(text: str) -> bool:
    """True for an add, False for a delete.

    Raises:
        LineError: ``action``, for any other word.
    """
    word = text.strip().lower()
    if word in ADD_ACTIONS:
        return True
    if word in DELETE_ACTIONS:
        return False
    raise LineError("action")


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def parse_change_row(row: list[str], columns: ColumnMap, normalise: Normalise) -> tuple[int, bool, dt.date | None]:
    """One change-list row: ``(E.164 digits, is_add, date or None)``.

    Raises:
        LineError: a missing column (``columns``), an unknown action, a bad date, or no
            valid US number.
    """
    if max(columns.number, columns.action) >= len(row):
        raise LineError("columns")
    is_add = parse_action(row[columns.action])
    date_text = _cell(row, columns.date)
    date = parse_date(date_text) if date_text else None
    number = row[columns.number].strip()
    if columns.area is not None:
        return us_e164(_cell(row, columns.area), number, normalise), is_add, date
    if not number:
        raise LineError("empty")
    return _checked(number, normalise), is_add, date


class ChangeListParser:
    """Reads change-list files into the numbers added and the numbers deleted.

    Args:
        normalise: checks each number (the US phone normaliser, which reads any spelling).
        columns: where the fields are.
        invalid: where rejected lines are recorded (a new one by default).
        progress: called with the rows read so far every ``progress_every`` rows.
        progress_every: see ``progress``.

    Attributes:
        lines: data rows read (headers and blank rows not included).
        first_date, last_date: the earliest and latest change dates seen (None without).
        in_order: False once a row was dated before an earlier row.
    """

    def __init__(self, normalise: Normalise, columns: ColumnMap = ColumnMap(),
                 invalid: InvalidLines | None = None, *, progress: Progress | None = None,
                 progress_every: int = PROGRESS_EVERY) -> None:
        self._normalise = normalise
        self._columns = columns
        self.invalid = invalid if invalid is not None else InvalidLines()
        self._progress = progress
        self._every = max(1, progress_every)
        self._added = BitMap64()
        self._deleted = BitMap64()
        self._conflicted = BitMap64()
        self.lines = 0
        self.first_date: dt.date | None = None
        self.last_date: dt.date | None = None
        self.in_order = True

    def feed(self, lines: Iterable[str], source: str) -> None:
        """Read every row of one CSV file (``source`` names it in the invalid-line report)."""
        reader = csv.reader(lines)
        header_possible = True
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:  # a NUL byte, an over-long field: this line only
                header_possible = False
                self.lines += 1
                self.invalid.add(source, reader.line_num, "format")
                continue
            if not any(cell.strip() for cell in row):
                continue
            try:
                number, is_add, date = parse_change_row(row, self._columns, self._normalise)
            except LineError as exc:
                if header_possible and self._is_header(row):
                    header_possible = False
                    continue
                header_possible = False
                self.lines += 1
                self.invalid.add(source, reader.line_num, exc.reason)
                continue
            header_possible = False
            self.lines += 1
            self._apply(number, is_add, date)
            if self._progress is not None and self.lines % self._every == 0:
                self._progress(self.lines)

    def _is_header(self, row: list[str]) -> bool:
        number = _cell(row, self._columns.number)
        action = _cell(row, self._columns.action).lower()
        return not any(c.isdigit() for c in number) and action not in ADD_ACTIONS | DELETE_ACTIONS

    def _apply(self, number: int, is_add: bool, date: dt.date | None) -> None:
        if date is not None:
            if self.last_date is not None and date < self.last_date:
                self.in_order = False
            self.first_date = date if self.first_date is None else min(self.first_date, date)
            self.last_date = date if self.last_date is None else max(self.last_date, date)
        mine, other = (self._added, self._deleted) if is_add else (self._deleted, self._added)
        if number in other:
            other.discard(number)
            self._conflicted.add(number)
        mine.add(number)

    def result(self) -> tuple[BitMap64, BitMap64]:
        """``(added, deleted)``: disjoint sets; see the module docstring for which line wins."""
        added, deleted = BitMap64(self._added), BitMap64(self._deleted)
        if not self.in_order:
            kept = self._conflicted & deleted
            deleted -= kept
            added |= kept
        return added, deleted
