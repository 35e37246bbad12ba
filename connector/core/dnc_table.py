"""The Do-Not-Call table: which E.164 numbers are blocked, and by which lists.

Pure: no Kafka. The materialiser (:mod:`connector.core.dnc_materialiser`, driven by the thread
of :mod:`connector.kafka.dnc_source`) feeds it; the window asks it.

An E.164 number (``+``, a country code that never starts with 0, at most 15 digits) is
stored as the integer of its digits, which is unique because the first digit is never 0.
Each list holds compressed integer sets (32-bit :class:`pyroaring.BitMap` per high 32-bit
word of the number), so a national registry of hundreds of millions of numbers costs a few
bytes per number instead of the ~90 bytes a Python ``set`` of strings needs.

**Entries, not numbers.** A DNC record is identified by its key (:mod:`connector.core.dnc_keys`):
``<list>/<number>`` names a list and a number, and a number may sit on several lists at
once; a tombstone or an expiry removes it from one list only. The table therefore keeps its
bitmaps per *key class* and per *target list*:

- the key class of ``national/+1...`` is ``national``; its records normally block the number
  under ``national`` (the target), or under ``dnc.unreadable_list`` when the value could not be
  read. Within a class a number has at most one target: a later record of the same key
  replaces the earlier one, a tombstone removes it;
- legacy bare-number keys (``+1...``) form the class :data:`BARE`: the key's identity is the
  number, so a later bare-key record naming another list moves the number between lists
  *among bare-key entries only*, and a bare tombstone removes what that bare key added. An
  entry of another class is never touched by a bare key (a migration writes the new keys
  first, then tombstones the bare ones: the number stays blocked throughout).

**Expiry.** An entry may carry ``expires_at`` (epoch milliseconds). Expiring entries are rare,
so they live in a side structure (a heap and one dict per slot) and cost nothing per number
otherwise; :meth:`DncTable.expire` removes the entries whose time has passed (the caller
passes the clock). Until it runs, an expired entry still blocks: the safe side.

Look-ups answer "blocked, and by which lists" (:meth:`DncTable.lists_of`); the window's
:meth:`DncTable.lookup_many` gives one list per blocked number, always the same one (the
first by name), whatever order the records arrived in.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from types import ModuleType
from typing import NamedTuple

from pyroaring import BitMap

_dnc_scan: ModuleType | None
try:  # built by ``pip install`` where a C compiler is found (setup.py)
    import connector.core._dnc_scan as _dnc_scan
except ImportError:  # pragma: no cover - a build without the C extension
    _dnc_scan = None

#: The key class of legacy bare-number keys (list names are never empty).
BARE = ""
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

#: ``high 32 bits -> bitmap of the low 32 bits``: one list's numbers of one key class.
Parts = dict[int, BitMap]
#: ``(key class, target list)``.
Slot = tuple[str, str]


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


class TableOp(NamedTuple):
    """One change to the table, as the materialiser core emits it (applied in order).

    Attributes:
        key_class: the key's list name, or :data:`BARE` for a legacy bare-number key.
        target: the list the numbers are blocked under; None for a removal (a tombstone, or a
            record that expired before it arrived).
        numbers: E.164 digits as ints (a list, or the C decoder's ``array('Q')``).
        expires_ms: when every one of these entries expires (epoch ms); None: never.
    """

    key_class: str
    target: str | None
    numbers: Sequence[int]
    expires_ms: int | None = None


class _Expiry:
    """The rare entries that expire: per slot ``{number: expires_ms}``, plus a heap in time order.

    A heap item whose time no longer matches its slot's dict is stale (the entry was
    replaced or removed) and is skipped when it surfaces.
    """

    __slots__ = ("by_slot", "heap")

    def __init__(self) -> None:
        self.by_slot: dict[Slot, dict[int, int]] = {}
        self.heap: list[tuple[int, str, str, int]] = []

    def __len__(self) -> int:
        return sum(len(d) for d in self.by_slot.values())

    def forget(self, key_class: str, numbers: Sequence[int]) -> None:
        """Drop the expiry of these numbers in every slot of ``key_class``."""
        for (cls, _), entries in self.by_slot.items():
            if cls == key_class and entries:
                for number in numbers:
                    entries.pop(number, None)

    def record(self, slot: Slot, numbers: Sequence[int], expires_ms: int) -> None:
        entries = self.by_slot.setdefault(slot, {})
        for number in numbers:
            entries[number] = expires_ms
            heapq.heappush(self.heap, (expires_ms, slot[0], slot[1], number))
        if len(self.heap) > 2 * len(self) + 1024:  # bounded: drop the stale items
            self.heap = [(t, c, n, x) for (c, n), d in self.by_slot.items() for x, t in d.items()]
            heapq.heapify(self.heap)

    def due(self, now_ms: int) -> Iterator[tuple[Slot, int]]:
        """Pop the live entries whose time has come: ``(slot, number)``."""
        heap = self.heap
        while heap and heap[0][0] <= now_ms:
            expires_ms, cls, name, number = heapq.heappop(heap)
            entries = self.by_slot.get((cls, name))
            if entries is not None and entries.get(number) == expires_ms:
                del entries[number]
                yield (cls, name), number


class _BareKeys:
    """The legacy single-number methods of :class:`DncTable`: they act on bare-key entries
    (:data:`BARE`), as a topic keyed by the bare number always did."""

    __slots__ = ()

    def put_many(self, key_class: str, target: str, numbers: Iterable[int], expires_ms: int | None = None) -> int:
        raise NotImplementedError

    def delete_many(self, key_class: str, numbers: Iterable[int]) -> None:
        raise NotImplementedError

    def add(self, e164: str, list_name: str) -> None:
        """Block ``e164`` under ``list_name`` as a bare-key entry (moving it out of any other
        bare-key list).

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        self.add_int(e164_to_int(e164), list_name)

    def add_int(self, number: int, list_name: str) -> None:
        """:meth:`add` of the number ``number`` (E.164 digits as an int)."""
        self.put_many(BARE, list_name, [number])

    def add_many(self, pairs: Iterable[tuple[int, str]]) -> int:
        """Block many numbers as bare-key entries; later pairs win over earlier ones for the
        same number.

        Args:
            pairs: ``(number, list_name)`` with the number as the int of its E.164 digits
                (:func:`e164_to_int`).

        Returns:
            How many pairs were applied.
        """
        count = 0
        run: list[int] = []
        run_list: str | None = None
        for number, list_name in pairs:
            if list_name != run_list or len(run) >= _CHUNK:
                if run_list is not None:
                    self.put_many(BARE, run_list, run)
                run = []
                run_list = list_name
            run.append(number)
            count += 1
        if run_list is not None and run:
            self.put_many(BARE, run_list, run)
        return count

    def remove(self, e164: str) -> None:
        """A bare-key tombstone: unblock what the bare key ``e164`` added.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        self.remove_int(e164_to_int(e164))

    def remove_int(self, number: int) -> None:
        """:meth:`remove` of the number ``number`` (E.164 digits as an int)."""
        self.delete_many(BARE, [number])

    def remove_many(self, numbers: Iterable[int]) -> None:
        """Bare-key tombstones for many numbers (E.164 digits as ints)."""
        self.delete_many(BARE, numbers)



class _Memory:
    """How :class:`DncTable` keeps its bitmaps small (its slots are in ``_order``)."""

    __slots__ = ()
    _order: list[tuple[str, Parts]]

    def optimize(self) -> None:
        """Compact the bitmaps (run containers, shrink buffers) and drop empty ones; call after
        a bulk load."""
        for _, parts in self._order:
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
        blobs = [(parts, [(high, part.serialize()) for high, part in parts.items()])
                 for _, parts in self._order]
        for parts, _ in blobs:
            parts.clear()
        release_heap()
        for parts, serialized in blobs:
            while serialized:
                high, blob = serialized.pop()
                parts[high] = BitMap.deserialize(blob)
                del blob
        del blobs
        release_heap()

    def memory_bytes(self) -> int:
        """Estimate the bytes the table occupies (container payloads plus bookkeeping)."""
        total = 0
        for _, parts in self._order:
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
        """Bytes of the portable serialization of every list (a snapshot's body, roughly)."""
        return sum(len(part.serialize()) for _, parts in self._order for part in parts.values())



class DncTable(_BareKeys, _Memory):
    """Blocked numbers, each remembered with the lists (and key classes) that block it.

    Each slot is split by the high 32 bits of the number into 32-bit roaring bitmaps
    (:class:`pyroaring.BitMap`): E.164 numbers share a handful of high words, and a 32-bit
    bitmap keeps its containers in flat arrays, where a 64-bit one (a radix tree) spends
    ~25 more bytes on each of the ~160,000 containers of a national list.

    The legacy single-number methods (:meth:`add`, :meth:`add_many`, :meth:`remove`, ...) act
    on bare-key entries (:data:`BARE`), as a topic keyed by the bare number always did;
    :meth:`put_many` and :meth:`delete_many` take the key class explicitly.
    """

    __slots__ = ("_classes", "_expiry", "_order")

    def __init__(self) -> None:
        #: key class -> target list -> parts
        self._classes: dict[str, dict[str, Parts]] = {}
        #: every slot's ``(target, parts)``, by target then key class: the look-up order
        self._order: list[tuple[str, Parts]] = []
        self._expiry = _Expiry()

    # ------------------------------------------------------------------ writing

    def _parts(self, key_class: str, target: str) -> Parts:
        targets = self._classes.setdefault(key_class, {})
        parts = targets.get(target)
        if parts is None:
            parts = targets[target] = {}
            self._order = [(name, p) for (name, _), p in sorted(
                ((name, cls), p) for cls, ts in self._classes.items() for name, p in ts.items())]
        return parts

    def put_many(self, key_class: str, target: str, numbers: Iterable[int], expires_ms: int | None = None) -> int:
        """Block ``numbers`` under ``target`` as entries of ``key_class``.

        Within the class each number leaves any other target (a later record of the same key
        replaces the earlier one); other classes are not touched.

        Args:
            key_class: the key's list name, or :data:`BARE`.
            target: the list that blocks the numbers.
            numbers: E.164 digits as ints.
            expires_ms: when these entries expire (epoch ms); None: never.

        Returns:
            How many numbers were applied.
        """
        numbers = numbers if isinstance(numbers, Sequence) else list(numbers)
        if not numbers:
            return 0
        parts = self._parts(key_class, target)
        others = [p for name, p in self._classes[key_class].items() if name != target and p]
        for high, lows in split_numbers(numbers).items():
            part = parts.get(high)
            if part is None:
                part = parts[high] = BitMap()
            moved = [b for b in (other.get(high) for other in others) if b]
            if moved:
                _discard(moved, lows)
            part.update(lows)
        if self._expiry.by_slot:
            self._expiry.forget(key_class, numbers)
        if expires_ms is not None:
            self._expiry.record((key_class, target), numbers, expires_ms)
        return len(numbers)

    def delete_many(self, key_class: str, numbers: Iterable[int]) -> None:
        """Unblock ``numbers`` in ``key_class`` only (tombstones); absent numbers are ignored."""
        targets = self._classes.get(key_class)
        if not targets:
            return
        numbers = numbers if isinstance(numbers, Sequence) else list(numbers)
        for high, lows in split_numbers(numbers).items():
            _discard([b for b in (p.get(high) for p in targets.values()) if b], lows)
        if self._expiry.by_slot:
            self._expiry.forget(key_class, numbers)

    def apply(self, ops: Iterable[TableOp]) -> None:
        """Carry out the materialiser's operations, in order.

        Bare-key additions go through :meth:`add_many`, the method the legacy table had (a
        subclass that wraps it sees every bare-key load, as before).
        """
        for op in ops:
            if op.target is None:
                self.delete_many(op.key_class, op.numbers)
            elif op.key_class == BARE and op.expires_ms is None:
                self.add_many(zip(op.numbers, repeat(op.target)))
            else:
                self.put_many(op.key_class, op.target, op.numbers, op.expires_ms)

    def expire(self, now_ms: int) -> int:
        """Remove every entry whose ``expires_at`` is at or before ``now_ms``.

        Returns:
            How many entries expired.
        """
        count = 0
        for (key_class, target), number in self._expiry.due(now_ms):
            part = self._classes[key_class][target].get(number >> _LOW_BITS)
            if part is not None:
                part.discard(number & _LOW_MASK)
            count += 1
        return count

    # ------------------------------------------------------------------ reading

    def lookup(self, e164: str) -> str | None:
        """The first list (by name) that blocks ``e164``, or None when it may be called.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        return self.lookup_int(e164_to_int(e164))

    def lookup_int(self, number: int) -> str | None:
        """:meth:`lookup` of ``number`` (E.164 digits as an int)."""
        high = number >> _LOW_BITS
        low = number & _LOW_MASK
        for name, parts in self._order:
            part = parts.get(high)
            if part is not None and low in part:
                return name
        return None

    def lists_of(self, e164: str) -> tuple[str, ...]:
        """Every list that blocks ``e164``, sorted by name; empty when it may be called.

        Raises:
            ValueError: ``e164`` is not E.164.
        """
        return self.lists_of_int(e164_to_int(e164))

    def lists_of_int(self, number: int) -> tuple[str, ...]:
        """:meth:`lists_of` of ``number`` (E.164 digits as an int)."""
        high, low = number >> _LOW_BITS, number & _LOW_MASK
        found: list[str] = []
        for name, parts in self._order:
            part = parts.get(high)
            if part is not None and low in part and (not found or found[-1] != name):
                found.append(name)
        return tuple(found)

    def lookup_many(self, numbers: Iterable[str]) -> dict[str, str]:
        """The blocked ones among E.164 ``numbers``: ``{number: first list by name}``
        (:meth:`lookup_int` inlined: the window asks for every record twice). A string that is
        not a number is reported as not blocked: callers pass the normaliser's output."""
        found: dict[str, str] = {}
        lists = [(name, parts) for name, parts in self._order if parts]
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
        """Distinct numbers blocked (a number on two lists counts once)."""
        by_high: dict[int, list[BitMap]] = {}
        for _, parts in self._order:
            for high, part in parts.items():
                if part:
                    by_high.setdefault(high, []).append(part)
        total = 0
        for bitmaps in by_high.values():
            if len(bitmaps) == 1:
                total += len(bitmaps[0])
                continue
            # |big ∪ rest| = |big| + |rest| - |big ∩ rest|: the big list is never copied
            bitmaps.sort(key=len)
            big, rest = bitmaps[-1], BitMap.union(*bitmaps[:-1])
            total += len(big) + len(rest) - big.intersection_cardinality(rest)
        return total

    def entries(self) -> int:
        """Entries held: ``(key class, list, number)`` triples."""
        return sum(len(part) for _, parts in self._order for part in parts.values())

    def list_sizes(self) -> dict[str, int]:
        """How many entries each list holds (for metrics; bare-key and keyed ones together)."""
        sizes: dict[str, int] = {}
        for name, parts in self._order:
            sizes[name] = sizes.get(name, 0) + sum(len(part) for part in parts.values())
        return sizes

    def expiring(self) -> int:
        """Entries that carry an expiry."""
        return len(self._expiry)

    # ------------------------------------------------------------------ snapshots

    def slots(self) -> Iterator[tuple[str, str, Parts]]:
        """Every ``(key class, target, parts)``, in a stable order (for snapshots)."""
        for key_class in sorted(self._classes):
            for target in sorted(self._classes[key_class]):
                yield key_class, target, self._classes[key_class][target]

    def expiring_entries(self) -> Iterator[tuple[str, str, int, int]]:
        """Every ``(key class, target, number, expires_ms)`` (for snapshots)."""
        for (key_class, target), entries in sorted(self._expiry.by_slot.items()):
            for number, expires_ms in sorted(entries.items()):
                yield key_class, target, number, expires_ms

    def restore_part(self, key_class: str, target: str, high: int, part: BitMap) -> None:
        """Put a bitmap read from a snapshot in place (it must not be in the table yet)."""
        self._parts(key_class, target)[high] = part

    def restore_expiry(self, key_class: str, target: str, number: int, expires_ms: int) -> None:
        """Record an expiry read from a snapshot."""
        self._parts(key_class, target)
        self._expiry.record((key_class, target), [number], expires_ms)

def _discard(bitmaps: list[BitMap], lows: Sequence[int]) -> None:
    """Remove ``lows`` from each bitmap: one by one for a few, by a bitmap andnot for many."""
    if len(lows) < _SMALL_RUN:
        for bitmap in bitmaps:
            for low in lows:
                bitmap.discard(low)
        return
    removed = BitMap(lows)
    for bitmap in bitmaps:
        bitmap.difference_update(removed)


def split_sorted_py(numbers: Iterable[int]) -> dict[int, list[int]]:
    """``{high 32 bits: sorted low 32 bits}``: the reference of the C ``split_sorted``."""
    return {high: sorted(lows) for high, lows in _split(numbers).items()}


def split_numbers(numbers: Sequence[int]) -> Mapping[int, Sequence[int]]:
    """Group numbers by their high 32 bits for the bitmaps: sorted, in C, when the extension
    was built (a roaring bitmap takes sorted numbers several times faster), else in order."""
    if _dnc_scan is not None and len(numbers) >= 64:
        groups: Mapping[int, Sequence[int]] = _dnc_scan.split_sorted(numbers)
        return groups
    return _split(numbers)


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
