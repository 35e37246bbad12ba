"""Plain data shared by every stage: source references, decoded contact events, batches.

Pure: no I/O, no Kafka, no asyncio. Other modules import these shapes, so names and fields
are a contract; add to them, never rename.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: ``(topic, partition)``.
TP = tuple[str, int]


class SourceRef(NamedTuple):
    """Where one consumed record came from.

    A named tuple: every consumed record gets one, and a tuple is built, hashed and sorted
    in C (a frozen dataclass took twice as long to build).
    """

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> TP:
        """The record's ``(topic, partition)``."""
        return (self.topic, self.partition)


#: The fields of a contact event that only a CXone request body and the audit trail read, in
#: the order :func:`pack_details` packs them into :attr:`ContactEvent.details`.
DETAIL_FIELDS = ("event_id", "first_name", "last_name", "email", "custom_fields", "changed_at_ms", "source_system")


def pack_details(event_id: str, first_name: str | None, last_name: str | None, email: str | None,
                 custom_fields: dict[str, str], changed_at_ms: int, source_system: str) -> bytes:
    """The :data:`DETAIL_FIELDS` of one contact event as one ``bytes`` (marshal)."""
    return marshal.dumps((event_id, first_name, last_name, email, custom_fields, changed_at_ms, source_system))


class ContactEvent:
    """One decoded, normalised CRM record.

    What the window and the commit tracker read for every record are plain attributes:
    ``source``, ``key``, ``raw`` and ``headers`` (the original record, kept so it can be
    dead-lettered byte for byte), ``produced_at_ms``, ``contact_id``, ``phone_e164``,
    ``opted_in`` and ``item_bytes`` (what the contact adds to a bulk-insert body,
    ``connector.core.windowing.item_cost``, computed where it was decoded), ``time_zone`` (the
    IANA zone the dialler keeps calling hours in, ``""`` when unknown) and
    ``time_zone_source`` (where it came from, one of ``connector.core.time_zones.SOURCES``, or
    ``""`` when nothing resolved it, as for an opt-out).

    The :data:`DETAIL_FIELDS` are read only when the contact goes into a CXone request or the
    audit trail. They travel packed in ``details`` (one ``bytes``, as the decoder packed them)
    and are unpacked on first access. A record waiting in the window is then about eight
    Python objects fewer: allocating and freeing them was a large share of the coordinator's
    cost per record (``docs/benchmarks.md``, session 4).

    ``ContactEvent(...)`` is the decoder's form (the details packed); :meth:`of` takes every
    field by name.
    """

    __slots__ = ("_unpacked", "contact_id", "details", "headers", "item_bytes", "key", "opted_in",
                 "phone_e164", "produced_at_ms", "raw", "source", "time_zone", "time_zone_source")

    def __init__(self, source: SourceRef, key: bytes | None, raw: bytes, headers: list[tuple[str, bytes]],
                 produced_at_ms: int, contact_id: str, phone_e164: str, opted_in: bool, item_bytes: int | None,
                 details: bytes, time_zone: str = "", time_zone_source: str = "") -> None:
        self.source = source
        self.key = key
        self.raw = raw
        self.headers = headers
        self.produced_at_ms = produced_at_ms
        self.contact_id = contact_id
        self.phone_e164 = phone_e164
        self.opted_in = opted_in
        self.item_bytes = item_bytes
        self.details = details
        self.time_zone = time_zone
        self.time_zone_source = time_zone_source
        self._unpacked: tuple[Any, ...] | None = None

    @classmethod
    def of(cls, source: SourceRef, key: bytes | None, raw: bytes, headers: list[tuple[str, bytes]],
           produced_at_ms: int, event_id: str, contact_id: str, phone_e164: str, opted_in: bool,
           first_name: str | None, last_name: str | None, email: str | None, custom_fields: dict[str, str],
           changed_at_ms: int, source_system: str, item_bytes: int | None = None, time_zone: str = "",
           time_zone_source: str = "") -> ContactEvent:
        """An event from every field (the details packed here)."""
        return cls(source, key, raw, headers, produced_at_ms, contact_id, phone_e164, opted_in, item_bytes,
                   pack_details(event_id, first_name, last_name, email, custom_fields, changed_at_ms,
                                source_system), time_zone, time_zone_source)

    def _detail(self, index: int) -> Any:
        unpacked = self._unpacked
        if unpacked is None:
            unpacked = self._unpacked = marshal.loads(self.details)  # noqa: S302 - packed by pack_details
        return unpacked[index]

    @property
    def event_id(self) -> str:
        """The CRM event id."""
        return self._detail(0)  # type: ignore[no-any-return]

    @property
    def first_name(self) -> str | None:
        """The contact's first name."""
        return self._detail(1)  # type: ignore[no-any-return]

    @property
    def last_name(self) -> str | None:
        """The contact's last name."""
        return self._detail(2)  # type: ignore[no-any-return]

    @property
    def email(self) -> str | None:
        """The contact's e-mail address."""
        return self._detail(3)  # type: ignore[no-any-return]

    @property
    def custom_fields(self) -> dict[str, str]:
        """The CRM's custom fields (a copy: the event is not changed through it)."""
        return dict(self._detail(4))

    @property
    def changed_at_ms(self) -> int:
        """When the CRM changed the opt-in, epoch milliseconds."""
        return self._detail(5)  # type: ignore[no-any-return]

    @property
    def source_system(self) -> str:
        """The CRM that sent the event."""
        return self._detail(6)  # type: ignore[no-any-return]

    def _fields(self) -> tuple[Any, ...]:
        return (self.source, self.key, self.raw, self.headers, self.produced_at_ms, self.contact_id,
                self.phone_e164, self.opted_in, self.item_bytes, self.time_zone, self.time_zone_source,
                *(self._detail(i) for i in range(len(DETAIL_FIELDS))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContactEvent):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        # no phone number, name or e-mail: a repr can end up in a log line
        return (f"ContactEvent(source={self.source!r}, contact_id={self.contact_id!r}, "
                f"opted_in={self.opted_in!r}, item_bytes={self.item_bytes!r})")


def offsets_by_partition(refs: Iterable[SourceRef]) -> dict[TP, list[int]]:
    """Source references as sorted, distinct offsets per ``(topic, partition)``.

    Args:
        refs: any source references, in any order; duplicates are ignored.
    """
    # Offsets grouped per partition and sorted as ints: sorting the refs themselves compares
    # topic strings pair by pair, three times slower on a batch of 10,000.
    by_tp: dict[TP, list[int]] = {}
    for topic, partition, offset in refs:
        offsets = by_tp.get((topic, partition))
        if offsets is None:
            by_tp[(topic, partition)] = [offset]
        else:
            offsets.append(offset)
    for tp, offsets in by_tp.items():
        by_tp[tp] = sorted(set(offsets))
    return by_tp


def _runs(by_tp: dict[TP, list[int]]) -> list[tuple[str, int, int, int]]:
    runs: list[tuple[str, int, int, int]] = []
    for (topic, partition), ordered in sorted(by_tp.items()):
        first = prev = ordered[0]
        for offset in ordered:
            if offset > prev + 1:
                runs.append((topic, partition, first, prev))
                first = offset
            prev = offset
        runs.append((topic, partition, first, prev))
    return runs


def source_ranges(refs: Iterable[SourceRef]) -> list[tuple[str, int, int, int]]:
    """Group source references into contiguous offset runs.

    Args:
        refs: any source references, in any order; duplicates are ignored.

    Returns:
        ``(topic, partition, first, last)`` tuples, sorted by topic, partition and offset;
        each run covers every offset from ``first`` to ``last`` inclusive.
    """
    return _runs(offsets_by_partition(refs))


def _batch_id(by_tp: dict[TP, list[int]]) -> str:
    text = "".join([f"{topic}\x00{partition}\x00{first}\x00{last}\n"
                    for topic, partition, first, last in _runs(by_tp)])
    return "b-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def batch_id_for(refs: Iterable[SourceRef]) -> str:
    """A deterministic batch id derived from the covered source offsets.

    The same set of records always gives the same id, whatever their order, so a batch
    rebuilt after a restart from the same records carries the same id (and idempotency key).

    Returns:
        ``"b-"`` followed by 32 hex digits of a SHA-256 over the contiguous offset runs.
    """
    return _batch_id(offsets_by_partition(refs))


@dataclass(slots=True)
class Batch:
    """What the window hands to delivery.

    Build one with :meth:`Batch.of`, which derives ``batch_id`` and ``offsets`` from
    ``covered``.

    Attributes:
        batch_id: deterministic, derived from the covered source offsets (:func:`batch_id_for`).
        contacts: compliant contacts, one per contact id (last write wins), DNC-checked at flush.
        covered: every source record this batch settles: the winners and the superseded ones.
        flush_reason: ``"size"``, ``"bytes"``, ``"age"`` or ``"shutdown"``.
        created_at: monotonic seconds when the window flushed.
        attempt: delivery attempt, 1 for the first submission.
        offsets: ``covered`` as :func:`offsets_by_partition` gives it (settlement takes whole
            partitions at once); computed on first use when not given.
    """

    batch_id: str
    contacts: list[ContactEvent]
    covered: list[SourceRef]
    flush_reason: str
    created_at: float
    attempt: int = 1
    offsets: dict[TP, list[int]] | None = None
    _sent: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, contacts: list[ContactEvent], covered: list[SourceRef], flush_reason: str,
           created_at: float, attempt: int = 1) -> Batch:
        """A batch whose id and offsets are derived from ``covered`` (one grouping for both)."""
        offsets = offsets_by_partition(covered)
        return cls(_batch_id(offsets), contacts, covered, flush_reason, created_at, attempt, offsets)

    def covered_offsets(self) -> dict[TP, list[int]]:
        """``covered`` as sorted, distinct offsets per partition."""
        if self.offsets is None:
            self.offsets = offsets_by_partition(self.covered)
        return self.offsets

    def source_ranges(self) -> list[tuple[str, int, int, int]]:
        """The covered records as ``(topic, partition, first, last)`` contiguous runs."""
        return _runs(self.covered_offsets())

    def idempotency_key(self) -> str:
        """A key the sink uses to drop repeats of this submission.

        A SHA-256 of ``batch_id``, ``attempt`` and the sources of the contacts sent, so it is
        stable across restarts for the same records, the same attempt and the same body (the
        window orders a batch's contacts by source), and differs whenever the body does: a
        contact removed by the send-time check, or another winner of a contact whose records
        were interleaved differently, never reuses a key with another body.
        """
        if self._sent is None:  # the contacts of a batch object never change: digest them once
            sent = "".join(f"{t}\x00{p}\x00{o}\n" for t, p, o in sorted(c.source for c in self.contacts))
            self._sent = hashlib.sha256(sent.encode()).hexdigest()[:32]
        return hashlib.sha256(f"{self.batch_id}:{self.attempt}:{self._sent}".encode()).hexdigest()
