"""What a ``dnc sync`` writes: the difference between a registry file and one list's keys.

Pure. :class:`ListKeys` reads the keys (never the values) of the compacted DNC topic and
keeps the numbers one list holds, as E.164 digits in a :class:`pyroaring.BitMap64`: a key
``<list>/<E.164>`` with a value adds its number, a tombstone removes it, in the topic's
order. Keys of other lists are skipped, so whatever another list holds is never read, never
written and stays blocked. Two kinds of keys are counted and left alone, since only
``<list>/<E.164>`` keys are this list's own (:mod:`connector.core.dnc_keys`): legacy
bare-number keys (their list is in the value, which the scan does not decode) and keys of
this list that spell the number in another form than E.164.

:func:`plan_full` and :func:`plan_changes` turn what a file lists and what the list holds
into a :class:`SyncPlan`: the numbers to add, the numbers to remove (tombstones of this
list's keys), and how many stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyroaring import BitMap64

from connector.core.dnc_keys import SEPARATOR, dnc_key, valid_list_name

_MAX_DIGITS = 15


class ListKeys:
    """The numbers one DNC list holds, from the topic's keys.

    Args:
        list_name: the list.

    Attributes:
        numbers: E.164 digits of every number the list holds (after the records fed so far).
        records: records fed.
        legacy: records with a bare-number key (not managed by ``dnc sync``).
        respelled: records of this list whose key is not ``<list>/<E.164>`` exactly.

    Raises:
        ValueError: ``list_name`` is not a valid list name.
    """

    def __init__(self, list_name: str) -> None:
        if not valid_list_name(list_name):
            raise ValueError("not a valid DNC list name")
        self.list_name = list_name
        self._prefix = (list_name + SEPARATOR).encode("ascii")
        self.numbers = BitMap64()
        self.records = 0
        self.legacy = 0
        self.respelled = 0

    def feed(self, records: Iterable[tuple[bytes | None, bool]]) -> None:
        """Apply records in the topic's order.

        Args:
            records: ``(key, is_tombstone)`` per record.
        """
        prefix = self._prefix
        start = len(prefix)
        numbers = self.numbers
        count = 0
        for key, tombstone in records:
            count += 1
            if key is None or not key.startswith(prefix):
                if key is not None and key[:1] == b"+":
                    self.legacy += 1
                continue
            digits = key[start + 1:]
            if (key[start:start + 1] != b"+" or not 2 <= len(digits) <= _MAX_DIGITS
                    or not digits.isdigit() or digits[:1] == b"0"):
                self.respelled += 1
                continue
            if tombstone:
                numbers.discard(int(digits))
            else:
                numbers.add(int(digits))
        self.records += count


@dataclass(frozen=True)
class SyncPlan:
    """What one sync writes, and what it leaves.

    Attributes:
        adds: numbers to write as entries of the list.
        removes: numbers whose key of the list gets a tombstone.
        unchanged: numbers the file names whose state on the list is already right.
        after: numbers the list holds once the plan is written.
        held: numbers the list held before.
    """

    adds: BitMap64
    removes: BitMap64
    unchanged: int
    after: int
    held: int

    @property
    def removal_share(self) -> float:
        """The share of the list's numbers the plan removes (0.0 for an empty list)."""
        return len(self.removes) / self.held if self.held else 0.0


def plan_full(listed: BitMap64, held: BitMap64) -> SyncPlan:
    """A full list replaces the list: add what is new, remove what is no longer listed."""
    adds = listed - held
    removes = held - listed
    return SyncPlan(adds, removes, len(listed) - len(adds), len(listed), len(held))


def plan_changes(added: BitMap64, deleted: BitMap64, held: BitMap64) -> SyncPlan:
    """A change list edits the list: add the added numbers not held yet, remove the deleted
    ones held; a deleted number the list does not hold, or an added one it holds, is
    unchanged. ``added`` and ``deleted`` must be disjoint (as
    :meth:`connector.core.registry_files.ChangeListParser.result` returns them).

    Raises:
        ValueError: ``added`` and ``deleted`` share numbers.
    """
    if added.intersect(deleted):
        raise ValueError("a number cannot be both added and deleted")
    adds = added - held
    removes = deleted & held
    unchanged = len(added) - len(adds) + len(deleted) - len(removes)
    return SyncPlan(adds, removes, unchanged, len(held) + len(adds) - len(removes), len(held))


def keys_of(list_name: str, numbers: Iterable[int]) -> Iterable[bytes]:
    """The record keys of ``numbers`` (E.164 digits) on ``list_name``, in order.

    Raises:
        ValueError: the list name is invalid, or a number is not E.164 digits.
    """
    for number in numbers:
        yield dnc_key(list_name, f"+{number}")
