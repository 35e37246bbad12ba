"""The Do-Not-Call table: which E.164 numbers are blocked, and by which list.

Pure: no Kafka. The materialiser (a consumer reading the compacted ``dnc.numbers`` topic)
feeds it; the window asks it.

An E.164 number (``+``, a country code that never starts with 0, at most 15 digits) is
stored as the integer of its digits, which is unique because the first digit is never 0.
Each list name holds compressed integer sets (32-bit :class:`pyroaring.BitMap` per high
32-bit word of the number), so a national registry of hundreds of millions of numbers costs
a few bytes per number instead of the ~90 bytes a Python ``set`` of strings needs. List
names are a small set, so a look-up asks each list in turn; a number sits in at most one
list (re-adding it under another list moves it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pyroaring import BitMap

#: A run of this many numbers for one list is applied with one bulk bitmap operation.
_CHUNK = 65_536
#: Below this many numbers, moving them out of other lists one by one beats a bitmap andnot.
_SMALL_RUN = 512
#: Approximate bookkeeping per roaring container (struct, key/pointer/type slots, malloc
#: headers and rounding), measured with glibc; used only by the memory estimate.
_CONTAINER_OVERHEAD = 66
_LOW_BITS = 32
_LOW_MASK = (1 << _LOW_BITS) - 1
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
    """Blocked numbers, each remembered with the list it came from.

    Each list is split by the high 32 bits of the number into 32-bit roaring bitmaps
    (:class:`pyroaring.BitMap`): E.164 numbers share a handful of high words, and a 32-bit
    bitmap keeps its containers in flat arrays, where a 64-bit one (a radix tree) spends
    ~25 more bytes on each of the ~160,000 containers of a national list.
    """

    __slots__ = ("_lists",)

    def __init__(self) -> None:
        #: list name -> {number >> 32: bitmap of the low 32 bits}
        self._lists: dict[str, dict[int, BitMap]] = {}

    def add(self, e164: str, list_name: str) -> None:
        """Block ``e164`` under ``list_name``, moving it out of any other list.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        self.add_int(e164_to_int(e164), list_name)

    def add_int(self, number: int, list_name: str) -> None:
        """Block the number ``number`` (E.164 digits as an int) under ``list_name``."""
        high, low = number >> _LOW_BITS, number & _LOW_MASK
        target = self._lists.setdefault(list_name, {})
        for name, parts in self._lists.items():
            if name != list_name:
                part = parts.get(high)
                if part is not None:
                    part.discard(low)
        part = target.get(high)
        if part is None:
            part = target[high] = BitMap()
        part.add(low)

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
        target = self._lists.setdefault(list_name, {})
        others = [parts for name, parts in self._lists.items() if name != list_name and parts]
        for high, lows in _split(run).items():
            part = target.get(high)
            if part is None:
                part = target[high] = BitMap()
            moved = [p for p in (other.get(high) for other in others) if p]
            if not moved:
                part.update(lows)
            elif len(lows) < _SMALL_RUN:
                for bitmap in moved:
                    for low in lows:
                        bitmap.discard(low)
                part.update(lows)
            else:
                incoming = BitMap(lows)
                for bitmap in moved:
                    bitmap.difference_update(incoming)
                part |= incoming

    def remove(self, e164: str) -> None:
        """Unblock ``e164`` (a tombstone); nothing happens when it is not blocked.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        self.remove_int(e164_to_int(e164))

    def remove_int(self, number: int) -> None:
        """Unblock the number ``number`` (E.164 digits as an int)."""
        high, low = number >> _LOW_BITS, number & _LOW_MASK
        for parts in self._lists.values():
            part = parts.get(high)
            if part is not None:
                part.discard(low)

    def remove_many(self, numbers: Iterable[int]) -> None:
        """Unblock many numbers (E.164 digits as ints) at once."""
        for high, lows in _split(numbers).items():
            removed = BitMap(lows)
            for parts in self._lists.values():
                part = parts.get(high)
                if part:
                    part.difference_update(removed)

    def lookup(self, e164: str) -> str | None:
        """Return the list that blocks ``e164``, or None when it may be called.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        return self.lookup_int(e164_to_int(e164))

    def lookup_int(self, number: int) -> str | None:
        """Return the list that blocks ``number`` (E.164 digits as an int), or None."""
        high = number >> _LOW_BITS
        low = number & _LOW_MASK
        for name, parts in self._lists.items():
            part = parts.get(high)
            if part is not None and low in part:
                return name
        return None

    def lookup_many(self, numbers: Iterable[str]) -> dict[str, str]:
        """The blocked ones among E.164 ``numbers``: ``{number: list}`` (:meth:`lookup_int`
        inlined: the window asks for every record twice). A string that is not a number is
        reported as not blocked: callers pass the normaliser's output, already E.164."""
        found: dict[str, str] = {}
        lists = [(name, parts) for name, parts in self._lists.items() if parts]
        if not lists:
            return found
        if len(lists) == 1:  # the usual case: one list, no inner loop
            name, parts = lists[0]
            get = parts.get
            for e164 in numbers:
                try:
                    number = int(e164)  # "+" reads as the sign: no slice
                except ValueError:
                    continue
                part = get(number >> _LOW_BITS)
                if part is not None and (number & _LOW_MASK) in part:
                    found[e164] = name
            return found
        for e164 in numbers:
            try:
                number = int(e164)
            except ValueError:
                continue
            high, low = number >> _LOW_BITS, number & _LOW_MASK
            for name, parts in lists:
                part = parts.get(high)
                if part is not None and low in part:
                    found[e164] = name
                    break
        return found

    def __contains__(self, e164: object) -> bool:
        if not isinstance(e164, str):
            return False
        try:
            return self.lookup_int(e164_to_int(e164)) is not None
        except ValueError:
            return False

    def __len__(self) -> int:
        return sum(len(part) for parts in self._lists.values() for part in parts.values())

    def list_sizes(self) -> dict[str, int]:
        """How many numbers each list holds (for metrics)."""
        return {name: sum(len(part) for part in parts.values()) for name, parts in self._lists.items()}

    def optimize(self) -> None:
        """Compact the bitmaps (run containers, shrink buffers) and drop empty ones; call after
        a bulk load."""
        for parts in self._lists.values():
            for high in [high for high, part in parts.items() if not part]:
                del parts[high]
            for part in parts.values():
                part.run_optimize()
                part.shrink_to_fit()

    def compact(self, release_heap: Callable[[], None] = lambda: None) -> None:
        """:meth:`optimize`, then rebuild every bitmap from its serialization with the old ones
        already freed, and give the freed heap back (``release_heap``, e.g.
        :func:`connector.ops.runtime.release_free_heap`; core code does no process calls).

        A bulk load grows thousands of containers by reallocation between other short-lived
        allocations, so freed gaps stay scattered over the heap's pages and the resident set
        exceeds the bitmaps' size by ~50 %. Freed first, the old containers' pages coalesce;
        the rebuilt containers are then laid out packed. Costs ~0.1 s per million numbers and
        briefly the serialized size (~2 bytes per number) on top.
        """
        self.optimize()
        blobs = {name: [(high, part.serialize()) for high, part in parts.items()]
                 for name, parts in self._lists.items()}
        self._lists = {name: {} for name in blobs}
        release_heap()
        for name, serialized in blobs.items():
            parts = self._lists[name]
            while serialized:
                high, blob = serialized.pop()
                parts[high] = BitMap.deserialize(blob)
                del blob
        release_heap()

    def memory_bytes(self) -> int:
        """Estimate the bytes the table occupies (container payloads plus bookkeeping)."""
        total = 0
        for parts in self._lists.values():
            for part in parts.values():
                stats = part.get_statistics()
                total += (
                    stats["n_bytes_array_containers"]
                    + stats["n_bytes_run_containers"]
                    + stats["n_bytes_bitset_containers"]
                    + stats["n_containers"] * _CONTAINER_OVERHEAD
                )
        return total

    def serialized_bytes(self) -> int:
        """Bytes of the portable serialization of every list (a snapshot's size)."""
        return sum(len(part.serialize()) for parts in self._lists.values() for part in parts.values())


def _split(numbers: Iterable[int]) -> dict[int, list[int]]:
    """Group numbers by their high 32 bits: ``{high: [low, ...]}``, order kept."""
    groups: dict[int, list[int]] = {}
    for number in numbers:
        high = number >> _LOW_BITS
        lows = groups.get(high)
        if lows is None:
            lows = groups[high] = []
        lows.append(number & _LOW_MASK)
    return groups
