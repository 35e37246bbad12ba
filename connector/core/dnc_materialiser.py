"""Materialising a compacted topic into a table: the pure core, in the manner of a sans-I/O
protocol (websockets' ``protocol.py``).

The thread that owns the Kafka consumer (:mod:`connector.kafka.dnc_source`) only polls and
carries out effects; every decision is made here, fed with values and the time:

- :meth:`Materialiser.begin` takes the topic's partitions with their low and high
  watermarks (and, after a trusted snapshot, the offsets it covers) and says where to start
  each partition: at its covered offset, or from the beginning;
- :meth:`Materialiser.on_batch` takes one consumed batch, in consume order, and returns the
  table operations and dead letters of its records (a *decoder* says what records mean:
  :class:`connector.core.dnc_records.DncRecordDecoder` for the DNC topic; another compacted
  topic keyed by E.164 brings its own decoder and table and reuses everything else);
- :meth:`Materialiser.on_metadata` takes the partitions seen later and says which ones are
  new (read from the beginning; the table is not ready until they are caught up);
- :meth:`Materialiser.probes` says which partitions to seek to where they are, so that the
  broker answers with a fresh end-of-partition event: proof of a successful fetch for a
  partition that receives nothing;
- :meth:`Materialiser.assess` says whether the table is *current*.

**Positions.** A partition's position is the offset after its last record, or the offset of
its latest end-of-partition event, whichever is higher; never "last offset + 1" alone
(a transactional producer leaves commit markers that are never delivered, so the last
record seen may sit below the end for ever). A partition is caught up once its position
reaches the high watermark it had when it was first seen; the table is *ready* when every
partition is.

**Current** means: ready, and every partition had a successful fetch within ``max_stall_s``.
Evidence of a successful fetch is a record of that partition or an end-of-partition event
for it; an error answer is not (an error event for a partition makes it stale at once,
until new evidence arrives). :class:`CurrencyView` carries the verdict to other threads,
and keeps ageing it there, so a thread that stops reporting makes the table not current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from connector.errors import ConnectorError

#: Start a partition from its first record (librdkafka's ``OFFSET_BEGINNING``).
BEGINNING = -2
OpT = TypeVar("OpT")


class TopicChangedError(ConnectorError):
    """A partition the table was built from is gone: the topic was deleted or recreated.
    Not retriable: only a rebuild from a fresh start gives a right table."""


class ConsumedRecord(Protocol):
    """The part of ``confluent_kafka.Message`` the core reads."""

    def error(self) -> Any: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...


class Record:
    """A consumed record as a plain value (tests and tools); quacks like a ``Message``.

    ``error`` is an error event instead of a record: anything with a ``code()``.
    """

    __slots__ = ("_error", "_key", "_offset", "_partition", "_value")

    def __init__(self, partition: int, offset: int, key: bytes | None, value: bytes | None,
                 error: Any = None) -> None:
        self._partition, self._offset, self._key, self._value, self._error = partition, offset, key, value, error

    def error(self) -> Any:
        return self._error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record to dead-letter: the record itself (the caller copies its key, value and
    headers), where it was, and why (``message`` never holds the key or a number)."""

    record: ConsumedRecord
    partition: int
    offset: int
    error_class: str
    message: str
    reason: str


@dataclass(slots=True)
class Decoded(Generic[OpT]):
    """What one consumed batch means.

    Attributes:
        ops: the table operations, to apply in order.
        dead_letters: records to dead-letter.
        ends: ``partition -> offset after its last record`` in this batch.
        eofs: ``partition -> offset`` of end-of-partition events.
        errors: ``(partition, error)`` of other error events (partition -1 when none).
        records: data records in the batch.
        counts: the decoder's counters.
    """

    ops: list[OpT] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    eofs: dict[int, int] = field(default_factory=dict)
    errors: list[tuple[int, Any]] = field(default_factory=list)
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class Decoder(Protocol[OpT]):
    """Says what a consumed batch means for one kind of table."""

    def decode(self, records: Sequence[ConsumedRecord], now_ms: int) -> Decoded[OpT]: ...


@dataclass(frozen=True, slots=True)
class Currency:
    """Whether the table is current; ``not_current_since`` is the monotonic time it stopped
    being current (or the start, when it never was), None while current."""

    current: bool
    reason: str
    not_current_since: float | None


@dataclass(frozen=True, slots=True)
class CurrencyView:
    """:class:`Currency` as assessed at ``assessed_at``, to be read by other threads.

    ``oldest_fetch`` is the oldest partition's latest evidence of a successful fetch;
    :meth:`at` ages the verdict with it, so a view nobody refreshes turns not current.
    """

    currency: Currency
    assessed_at: float
    oldest_fetch: float | None
    max_stall_s: float

    def at(self, now: float) -> Currency:
        """The verdict at ``now`` (monotonic seconds)."""
        verdict = self.currency
        if verdict.current and self.oldest_fetch is not None and now - self.oldest_fetch > self.max_stall_s:
            return Currency(False, f"no successful fetch reported for {now - self.oldest_fetch:.0f}s "
                                   f"(limit {self.max_stall_s:g}s)", self.oldest_fetch + self.max_stall_s)
        return verdict


@dataclass(slots=True)
class _Partition:
    target: int  # the high watermark when the partition was first seen
    position: int  # the offset after what was read
    last_ok: float | None = None  # monotonic time of the latest evidence of a good fetch
    last_error: float | None = None
    last_probe: float = float("-inf")
    #: wall time (epoch ms) after which every record past ``target`` (and past the latest
    #: end-of-partition event) was written: when the watermarks were read, then each event
    end_seen_ms: int | None = None

    @property
    def caught_up(self) -> bool:
        return self.position >= self.target


class Materialiser(Generic[OpT]):
    """The bootstrap, current-ness and position rules of one materialised topic (pure).

    Args:
        decoder: says what records mean (and which operations they become).
        max_stall_s: a partition without evidence of a successful fetch for longer is stale.
        probe_interval_s: how long a partition may go without evidence before it is probed
            (a quarter of ``max_stall_s`` by default).
        probe_gap_s: the least time between two probes of a partition: a probe restarts the
            partition's fetch, so probing again before the broker could answer (a fetch waits
            up to ``fetch.wait.max.ms``, 500 ms by default) would never let an answer arrive.
        created_at: monotonic time of creation (the table is not current since then).
    """

    def __init__(self, decoder: Decoder[OpT], *, max_stall_s: float, probe_interval_s: float | None = None,
                 probe_gap_s: float = 2.0, created_at: float = 0.0) -> None:
        self._decoder = decoder
        self.max_stall_s = max_stall_s
        self._probe_interval = max(probe_gap_s, probe_interval_s if probe_interval_s is not None else max_stall_s / 4)
        self._probe_gap = probe_gap_s
        self._parts: dict[int, _Partition] = {}
        self._begun = False
        self._since: float | None = created_at
        self._waiting = "starting"
        self._client_error = ""
        #: Records read before the table was first ready, and when it first was.
        self.bootstrap_records = 0
        self.ready_at: float | None = None

    # ------------------------------------------------------------------ start-up

    def waiting(self, reason: str) -> None:
        """Record why the start cannot happen yet (the broker or the topic is unavailable)."""
        self._waiting = reason

    def begin(self, marks: Mapping[int, tuple[int, int]], now: float,
              positions: Mapping[int, int] | None = None, wall_ms: int | None = None) -> list[tuple[int, int]]:
        """Start from the topic's partitions ``{partition: (low, high)}``.

        Args:
            marks: every partition's low and high watermark.
            now: monotonic seconds.
            positions: the offsets a trusted snapshot covers (its table is the start), or
                None to read every partition from the beginning.
            wall_ms: when ``marks`` were read (epoch ms): every record past them is younger.

        Returns:
            ``(partition, offset)`` to assign; ``offset`` may be :data:`BEGINNING`.
        """
        self._parts = {}
        assign = []
        for partition, (low, high) in sorted(marks.items()):
            start = max(low, 0) if positions is None else positions[partition]
            self._parts[partition] = _Partition(high, start, end_seen_ms=wall_ms)
            assign.append((partition, BEGINNING if positions is None else start))
        self._begun = True
        self._check_ready(now)
        return assign

    def on_metadata(self, marks: Mapping[int, tuple[int, int]], now: float,
                    wall_ms: int | None = None) -> list[tuple[int, int]]:
        """Take the partitions seen now (``wall_ms``: when their watermarks were read); new
        ones are read from the beginning.

        Returns:
            ``(partition, BEGINNING)`` for each new partition.

        Raises:
            TopicChangedError: a partition the table was built from is gone.
        """
        gone = set(self._parts) - set(marks)
        if gone:
            raise TopicChangedError(f"{len(gone)} partition(s) of the topic disappeared: it was deleted or recreated")
        new = []
        for partition, (low, high) in sorted(marks.items()):
            if partition not in self._parts:
                self._parts[partition] = _Partition(high, max(low, 0), end_seen_ms=wall_ms)
                new.append((partition, BEGINNING))
        self._check_ready(now)
        return new

    # ------------------------------------------------------------------ per poll

    def on_batch(self, records: Sequence[ConsumedRecord], now: float, wall_ms: int) -> Decoded[OpT]:
        """Decode one consumed batch and move positions and fetch evidence on.

        Returns:
            The decoder's answer: operations to apply in order, dead letters, error events.
        """
        decoded = self._decoder.decode(records, wall_ms)
        parts = self._parts
        for partition, end in decoded.ends.items():
            part = parts.get(partition)
            if part is not None:
                part.position = max(part.position, end)
                part.last_ok = now
        for partition, offset in decoded.eofs.items():
            part = parts.get(partition)
            if part is not None:
                part.position = max(part.position, offset)
                part.last_ok = now
                part.end_seen_ms = wall_ms
        for partition, _ in decoded.errors:
            self.on_error(partition, now)
        if self.ready_at is None:
            self.bootstrap_records += decoded.records
        self._check_ready(now)
        return decoded

    def on_error(self, partition: int, now: float, reason: str = "") -> None:
        """An error answer for ``partition`` (-1: for every partition): stale until new
        evidence arrives; ``reason`` (bounded, no data) goes into the verdict."""
        if reason:
            self.note(reason)
        for number, part in self._parts.items():
            if partition in (-1, number):
                part.last_error = now

    def note(self, reason: str) -> None:
        """Remember a client-level error (bounded, no data) for the verdict's reason."""
        self._client_error = reason

    def probes(self, now: float) -> list[tuple[int, int]]:
        """Partitions to seek to their position, so that the broker answers afresh: those
        without evidence for ``probe_interval_s``, or with an error since their last evidence
        (never twice within ``probe_gap_s``).

        Returns:
            ``(partition, position)`` pairs; the caller seeks each and reports the outcome
            through :meth:`on_batch` as usual.
        """
        out = []
        for partition, part in self._parts.items():
            quiet = part.last_ok is None or now - part.last_ok >= self._probe_interval
            failed = part.last_error is not None and (part.last_ok is None or part.last_error >= part.last_ok)
            since = now - part.last_probe
            if (quiet and since >= self._probe_interval) or (failed and since >= self._probe_gap):
                part.last_probe = now
                out.append((partition, part.position))
        return out

    # ------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """Every partition is caught up with the high watermark it had when first seen."""
        return self._begun and all(part.caught_up for part in self._parts.values())

    def _check_ready(self, now: float) -> None:
        if self.ready_at is None and self.ready:
            self.ready_at = now

    def positions(self) -> dict[int, int]:
        """``partition -> offset after what was read``: what a snapshot of the table covers."""
        return {partition: part.position for partition, part in sorted(self._parts.items())}

    def covered_at_ms(self) -> int | None:
        """Wall time (epoch ms) after which every record past :meth:`positions` was written, once
        ready (a snapshot's age for the tombstone-retention rule): per partition, when its
        watermarks were read or it was last seen at its end, whichever is later; the oldest
        of those. None when unknown."""
        times = [part.end_seen_ms for part in self._parts.values()]
        if not times or any(t is None for t in times):
            return None
        return min(t for t in times if t is not None)

    def partitions(self) -> int:
        return len(self._parts)

    def behind(self) -> int:
        """Partitions not caught up yet."""
        return sum(1 for part in self._parts.values() if not part.caught_up)

    def _fresh(self, part: _Partition, now: float) -> bool:
        ok = part.last_ok
        if ok is None or now - ok > self.max_stall_s:
            return False
        return part.last_error is None or ok > part.last_error

    def assess(self, now: float) -> CurrencyView:
        """Whether the table is current at ``now`` (see the module docstring), for any thread."""
        parts = self._parts
        reason = ""
        if not self._begun:
            reason = f"waiting for the topic: {self._waiting}"
        elif not self.ready:
            reason = f"catching up: {self.behind()} of {len(parts)} partition(s) behind"
        else:
            stale = sum(1 for part in parts.values() if not self._fresh(part, now))
            if stale:
                reason = f"no successful fetch within {self.max_stall_s:g}s from {stale} of {len(parts)} partition(s)"
                if self._client_error:
                    reason += f" (last client error: {self._client_error})"
        oks = [part.last_ok for part in parts.values() if part.last_ok is not None]
        oldest = min(oks) if oks and len(oks) == len(parts) else None
        if reason:
            if self._since is None:
                self._since = now
            return CurrencyView(Currency(False, reason, self._since), now, oldest, self.max_stall_s)
        self._since = None
        self._client_error = ""
        return CurrencyView(Currency(True, "current", None), now, oldest, self.max_stall_s)
