"""Settlement and commit tracking: which source offsets are safe to commit.

Pure and single-threaded (called only from the asyncio loop). Every consumed record is
*tracked* until it is *settled*: audited, dead-lettered, or in a batch whose job ended and
whose job event the broker acknowledged. Per partition, the committable offset is the
highest offset below which every tracked offset is settled, plus one (Kafka commits the
*next* offset to read). Offsets that were never tracked (compaction gaps, transaction
markers) do not hold the commit back.

Commit order (as quix-streams writes down in ``checkpoint.py``):

1. Settle a record only after the producer acknowledged the record that settles it (the
   audit record, the dead letter, or the batch's job event). Until then it stays tracked.
2. Flush the producer, so nothing the settled records depend on is still in flight.
3. Commit :meth:`OffsetTracker.committable` synchronously, from the consumer thread (the
   only thread that touches the consumer).
4. Call :meth:`OffsetTracker.mark_committed` with what the broker accepted, so the same
   offsets are not committed again.

A crash between any two steps repeats at most the unsettled records: at-least-once, with the
batch idempotency key letting the sink drop the repeats.

Back-pressure: :attr:`OffsetTracker.over_limit` turns true when ``max_unsettled`` records are
unsettled (pause the consumer), and :attr:`OffsetTracker.under_resume_mark` when they fall to
80 % of it (resume); the gap between the two keeps the consumer from flapping.

Every operation is amortised O(1): per partition, a deque of tracked offsets in consume order
and a set of the unsettled ones; settling pops settled offsets off the deque's head.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from connector.core.models import TP, SourceRef, offsets_by_partition

#: Resume once the unsettled count is at or below this share of ``max_unsettled``.
RESUME_RATIO = 0.8


class _Partition:
    __slots__ = ("committable", "last_tracked", "order", "unsettled")

    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.unsettled: set[int] = set()
        self.last_tracked = -1
        self.committable: int | None = None


class OffsetTracker:
    """Tracks consumed offsets per partition until they are settled.

    Args:
        max_unsettled: the bound on unsettled records that :attr:`over_limit` reports.

    Raises:
        ValueError: ``max_unsettled`` is below 1.
    """

    def __init__(self, max_unsettled: int) -> None:
        if max_unsettled < 1:
            raise ValueError("max_unsettled must be >= 1")
        self._max = max_unsettled
        self._resume_mark = int(max_unsettled * RESUME_RATIO)
        self._parts: dict[TP, _Partition] = {}
        self._committed: dict[TP, int] = {}
        self._unsettled = 0

    @property
    def max_unsettled(self) -> int:
        """The configured bound."""
        return self._max

    @property
    def unsettled(self) -> int:
        """How many tracked records are not settled yet."""
        return self._unsettled

    @property
    def over_limit(self) -> bool:
        """True when the consumer should pause: unsettled >= ``max_unsettled``."""
        return self._unsettled >= self._max

    @property
    def under_resume_mark(self) -> bool:
        """True when a paused consumer may resume: unsettled <= 80 % of ``max_unsettled``."""
        return self._unsettled <= self._resume_mark

    def track(self, tp: TP, offset: int) -> None:
        """Start tracking a consumed record.

        Offsets of a partition arrive in increasing order. An offset at or below the last
        one tracked (a re-delivery after a seek) is ignored: it is either still tracked or
        was settled already, so it must not hold the commit back again.
        """
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        if offset <= part.last_tracked:
            return
        part.last_tracked = offset
        part.order.append(offset)
        part.unsettled.add(offset)
        self._unsettled += 1

    def track_run(self, tp: TP, offsets: list[int]) -> None:
        """:meth:`track` for offsets of one partition in consume order (one consumed list's):
        the same outcome, in a few C-level steps instead of one call per record."""
        if not offsets:
            return
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        if offsets[0] <= part.last_tracked or offsets != sorted(set(offsets)):
            for offset in offsets:  # a re-delivery after a seek: record by record
                self.track(tp, offset)
            return
        part.order.extend(offsets)
        part.unsettled.update(offsets)
        part.last_tracked = offsets[-1]
        self._unsettled += len(offsets)

    def settle(self, ref: SourceRef) -> None:
        """Mark one record settled. Unknown records (revoked, already settled) are ignored."""
        self.settle_many((ref,))

    def settle_many(self, refs: Iterable[SourceRef]) -> None:
        """Mark many records settled; see :meth:`settle`."""
        self.settle_offsets(offsets_by_partition(refs))

    def settle_offsets(self, offsets: Mapping[TP, Iterable[int]]) -> None:
        """:meth:`settle_many` for offsets grouped per partition (a batch's
        :meth:`connector.core.models.Batch.covered_offsets`): one set operation per partition."""
        parts = self._parts
        settled = 0
        for tp, settling in offsets.items():
            part = parts.get(tp)
            if part is None:
                continue
            unsettled = part.unsettled
            before = len(unsettled)
            unsettled.difference_update(settling)
            if len(unsettled) == before:
                continue
            settled += before - len(unsettled)
            order = part.order
            while order and order[0] not in unsettled:
                part.committable = order.popleft() + 1
        self._unsettled -= settled

    def committable(self) -> dict[TP, int]:
        """Offsets to commit: per partition, the next offset to read after the settled prefix.

        Only partitions whose committable offset advanced past the last
        :meth:`mark_committed` are included.
        """
        result: dict[TP, int] = {}
        committed = self._committed
        for tp, part in self._parts.items():
            offset = part.committable
            if offset is not None and offset > committed.get(tp, -1):
                result[tp] = offset
        return result

    def mark_committed(self, offsets: dict[TP, int]) -> None:
        """Record offsets the broker accepted; lower ones than already marked are ignored."""
        for tp, offset in offsets.items():
            if offset > self._committed.get(tp, -1):
                self._committed[tp] = offset

    def revoke(self, tps: Iterable[TP]) -> None:
        """Forget partitions this consumer no longer owns (their records are read again)."""
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is not None:
                self._unsettled -= len(part.unsettled)
            self._committed.pop(tp, None)

    def partition_unsettled(self, tp: TP) -> int:
        """How many records of one partition are unsettled (for metrics and tests)."""
        part = self._parts.get(tp)
        return 0 if part is None else len(part.unsettled)
