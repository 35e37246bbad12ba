"""The Do-Not-Call table: which E.164 numbers are blocked, and by which list.

Pure: no Kafka. The materialiser (a consumer reading the compacted ``dnc.numbers`` topic)
feeds it; the window asks it.

An E.164 number (``+``, a country code that never starts with 0, at most 15 digits) is
stored as the integer of its digits, which is unique because the first digit is never 0.
Each list name holds a compressed 64-bit integer set (:class:`pyroaring.BitMap64`), so a
national registry of hundreds of millions of numbers costs a few bytes per number instead
of the ~70 bytes a Python ``set`` of strings needs. List names are a small set, so a
look-up asks each list in turn; a number sits in at most one list (re-adding it under
another list moves it).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

from pyroaring import BitMap64

#: A run of this many numbers for one list is applied with one bulk bitmap operation.
_CHUNK = 65_536
#: Below this many numbers, moving them out of other lists one by one beats a bitmap andnot.
_SMALL_RUN = 512
#: Approximate bookkeeping per roaring container (header, tree node share, malloc headers),
#: measured with glibc; used only by the memory estimate.
_CONTAINER_OVERHEAD = 72
_MAX_E164 = 999_999_999_999_999


def e164_to_int(e164: str) -> int:
    """Turn ``"+14155550123"`` into ``14155550123``.

    Raises:
        ValueError: ``e164`` is not E.164 (``+``, first digit 1-9, 2 to 15 ASCII digits).
    """
    digits = e164[1:]
    if (
        not e164.startswith("+")
        or not 2 <= len(digits) <= 15
        or not digits.isascii()
        or not digits.isdigit()
        or digits[0] == "0"
    ):
        raise ValueError("not an E.164 number")
    return int(digits)


def int_to_e164(number: int) -> str:
    """The inverse of :func:`e164_to_int`.

    Raises:
        ValueError: ``number`` has fewer than 2 or more than 15 digits.
    """
    if not 10 <= number <= _MAX_E164:
        raise ValueError("not an E.164 number")
    return f"+{number}"


class DncTable:
    """Blocked numbers, each remembered with the list it came from."""

    __slots__ = ("_lists",)

    def __init__(self) -> None:
        self._lists: dict[str, BitMap64] = {}

    def add(self, e164: str, list_name: str) -> None:
        """Block ``e164`` under ``list_name``, moving it out of any other list.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        self.add_int(e164_to_int(e164), list_name)

    def add_int(self, number: int, list_name: str) -> None:
        """Block the number ``number`` (E.164 digits as an int) under ``list_name``."""
        target = self._lists.get(list_name)
        if target is None:
            target = self._lists[list_name] = BitMap64()
        for name, bitmap in self._lists.items():
            if name != list_name:
                bitmap.discard(number)
        target.add(number)

    def add_many(self, pairs: Iterable[tuple[int, str]]) -> int:
        """Block many numbers at once; the fast path for bootstrap and bulk loads.

        Args:
            pairs: ``(number, list_name)`` with the number as the int of its E.164 digits
                (:func:`e164_to_int`). Later pairs win over earlier ones for the same number.

        Returns:
            How many pairs were applied.
        """
        count = 0
        run: list[int] = []
        run_list: str | None = None
        for number, list_name in pairs:
            if list_name != run_list or len(run) >= _CHUNK:
                if run_list is not None:
                    self._apply_run(run, run_list)
                run = []
                run_list = list_name
            run.append(number)
            count += 1
        if run_list is not None and run:
            self._apply_run(run, run_list)
        return count

    def _apply_run(self, run: list[int], list_name: str) -> None:
        target = self._lists.get(list_name)
        if target is None:
            target = self._lists[list_name] = BitMap64()
        others = [bm for name, bm in self._lists.items() if name != list_name and bm]
        if others:
            if len(run) < _SMALL_RUN:
                for bitmap in others:
                    for number in run:
                        bitmap.discard(number)
            else:
                incoming = BitMap64(run)
                for bitmap in others:
                    bitmap.difference_update(incoming)
                target.update(incoming)
                return
        target.update(run)

    def remove(self, e164: str) -> None:
        """Unblock ``e164`` (a tombstone); nothing happens when it is not blocked.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        self.remove_int(e164_to_int(e164))

    def remove_int(self, number: int) -> None:
        """Unblock the number ``number`` (E.164 digits as an int)."""
        for bitmap in self._lists.values():
            bitmap.discard(number)

    def remove_many(self, numbers: Iterable[int]) -> None:
        """Unblock many numbers (E.164 digits as ints) at once."""
        removed = BitMap64(numbers)
        if removed:
            for bitmap in self._lists.values():
                bitmap.difference_update(removed)

    def lookup(self, e164: str) -> str | None:
        """Return the list that blocks ``e164``, or None when it may be called.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        return self.lookup_int(e164_to_int(e164))

    def lookup_int(self, number: int) -> str | None:
        """Return the list that blocks ``number`` (E.164 digits as an int), or None."""
        for name, bitmap in self._lists.items():
            if number in bitmap:
                return name
        return None

    def __contains__(self, e164: object) -> bool:
        if not isinstance(e164, str):
            return False
        try:
            return self.lookup_int(e164_to_int(e164)) is not None
        except ValueError:
            return False

    def __len__(self) -> int:
        return sum(len(bitmap) for bitmap in self._lists.values())

    def list_sizes(self) -> dict[str, int]:
        """How many numbers each list holds (for metrics)."""
        return {name: len(bitmap) for name, bitmap in self._lists.items()}

    def optimize(self) -> None:
        """Compact the bitmaps (run containers, shrink buffers); call after a bulk load."""
        for bitmap in self._lists.values():
            bitmap.run_optimize()
            bitmap.shrink_to_fit()


    def memory_bytes(self) -> int:
        """Estimate the bytes the table occupies (container payloads plus bookkeeping)."""
        total = 0
        for bitmap in self._lists.values():
            stats = bitmap.get_statistics()
            total += (
                stats["n_bytes_array_containers"]
                + stats["n_bytes_run_containers"]
                + stats["n_bytes_bitset_containers"]
                + stats["n_containers"] * _CONTAINER_OVERHEAD
            )
        return total

    def serialized_bytes(self) -> int:
        """Bytes of the portable serialization of every list (a snapshot's size)."""
        return sum(len(bitmap.serialize()) for bitmap in self._lists.values())


def release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``), so that a bulk load's
    temporary growth does not stay in the resident set. A no-op where it is unavailable."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
