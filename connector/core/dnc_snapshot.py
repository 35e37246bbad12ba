"""The snapshot of a materialised table: a portable file format, and when to trust one.

Pure: the caller does the file I/O (:mod:`connector.kafka.dnc_state`); this module turns a
table and its metadata into byte chunks, reads them back through a ``read(n)`` callable,
and judges a snapshot against what the broker says about the topic now.

**Format** (integers little-endian)::

    magic        8 bytes   b"CXSNAP01"
    version      u32       1
    header size  u32
    header       JSON (UTF-8): SnapshotMeta (kind, topic, topic_id, partitions, offsets,
                 written_at_ms, covered_at_ms, lists, entries)
    body         the table's own encoding (for the DNC table, :func:`dnc_body`: per slot its
                 key class, list name and the portable serialization of each 32-bit roaring
                 bitmap, by high word; then the expiring entries)
    trailer      b"CXSNEND1" + SHA-256 of every byte before the trailer

The checksum covers the header too. A reader builds the table while it reads and checks the
digest at the end; on any failure the table is thrown away (never half-used): a bad
snapshot costs a rebuild from the topic, never a wrong table. Roaring's portable format is
the same on every platform and in every CRoaring binding.

**Trust** (:func:`untrusted_reason`): a snapshot is used only when it names the same topic,
the same topic id and partition count, every offset lies between the partition's low and
high watermarks now, and every record after its offsets is still on the topic: it is not
older than the topic's ``delete.retention.ms`` (less a margin), after which compaction may
have removed tombstones the snapshot never saw. Its age counts from ``covered_at_ms``, the
time each partition was last seen at its end, so records past the offsets are younger.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

from pyroaring import BitMap

from connector.core.dnc_table import DncTable
from connector.errors import ConnectorError

MAGIC = b"CXSNAP01"
TRAILER = b"CXSNEND1"
VERSION = 1
_DIGEST = 32
_MAX_HEADER = 16 * 2**20
_MAX_NAME = 4096
#: Expiring entries are written in groups of this many.
_EXPIRY_GROUP = 8192
_EXPIRY = struct.Struct("<IQq")


class SnapshotError(ConnectorError):
    """A snapshot that cannot be used.

    Attributes:
        reason: a bounded code (a metric label): ``truncated``, ``checksum``, ``format``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SnapshotMeta:
    """What a snapshot covers.

    Attributes:
        kind: which table (``dnc``).
        topic: the topic's name.
        topic_id: the topic's id (a Kafka Uuid in base64), or None when it was unknown (such
            a snapshot is never trusted).
        partitions: the topic's partition count.
        offsets: ``partition -> offset after the last record the table holds``.
        written_at_ms: when it was written (epoch ms).
        covered_at_ms: when every partition was last seen at its end (epoch ms).
        lists: the list names the table holds.
        entries: entries in the table.
    """

    kind: str
    topic: str
    topic_id: str | None
    partitions: int
    offsets: dict[int, int]
    written_at_ms: int
    covered_at_ms: int
    lists: list[str] = field(default_factory=list)
    entries: int = 0

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["offsets"] = {str(p): o for p, o in sorted(self.offsets.items())}
        return json.dumps(doc, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> SnapshotMeta:
        """Raises:
            SnapshotError: not a header of this format (reason ``format``)."""
        try:
            doc = json.loads(raw.decode("utf-8"))
            offsets = {int(p): int(o) for p, o in doc["offsets"].items()}
            meta = cls(kind=str(doc["kind"]), topic=str(doc["topic"]),
                       topic_id=None if doc["topic_id"] is None else str(doc["topic_id"]),
                       partitions=int(doc["partitions"]), offsets=offsets,
                       written_at_ms=int(doc["written_at_ms"]), covered_at_ms=int(doc["covered_at_ms"]),
                       lists=[str(n) for n in doc.get("lists", [])], entries=int(doc.get("entries", 0)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SnapshotError(f"snapshot header does not parse: {type(exc).__name__}", "format") from None
        return meta


@dataclass(frozen=True)
class TopicFacts:
    """What the broker says about the topic now.

    Attributes:
        topic: its name.
        topic_id: its id, or None when it could not be read.
        marks: ``partition -> (low, high)`` watermarks.
        delete_retention_ms: its ``delete.retention.ms``, or None when it could not be read.
    """

    topic: str
    topic_id: str | None
    marks: Mapping[int, tuple[int, int]]
    delete_retention_ms: int | None


def untrusted_reason(meta: SnapshotMeta, kind: str, facts: TopicFacts, now_ms: int,
                     margin_ms: int) -> str | None:
    """Why ``meta``'s snapshot must not be used for ``facts``' topic, or None when it may.

    Args:
        meta: the snapshot's header.
        kind: the table kind expected.
        facts: the topic as the broker describes it now.
        now_ms: the wall clock (epoch ms).
        margin_ms: subtracted from ``delete.retention.ms`` (clock skew, open transactions).

    Returns:
        A bounded reason (``format``, ``topic``, ``unverifiable``, ``topic_id``, ``partitions``,
        ``offset_past_end``, ``offset_before_start``, ``too_old``), or None.
    """
    if meta.kind != kind:
        return "format"
    if meta.topic != facts.topic:
        return "topic"
    if facts.topic_id is None or facts.delete_retention_ms is None or meta.topic_id is None:
        return "unverifiable"
    if meta.topic_id != facts.topic_id:
        return "topic_id"
    if meta.partitions != len(facts.marks) or set(meta.offsets) != set(facts.marks):
        return "partitions"
    for partition, (low, high) in facts.marks.items():
        offset = meta.offsets[partition]
        if offset > high:
            return "offset_past_end"
        if offset < max(low, 0):
            return "offset_before_start"
    age = now_ms - meta.covered_at_ms
    if age < -margin_ms or age > facts.delete_retention_ms - margin_ms:
        return "too_old"
    return None


def encode_snapshot(meta: SnapshotMeta, body: Iterable[bytes]) -> Iterator[bytes]:
    """The snapshot's bytes, chunk by chunk (header, ``body``, trailer with the digest)."""
    digest = hashlib.sha256()
    header = meta.to_json()
    for chunk in (MAGIC + struct.pack("<II", VERSION, len(header)), header):
        digest.update(chunk)
        yield chunk
    for chunk in body:
        digest.update(chunk)
        yield chunk
    yield TRAILER + digest.digest()


class SnapshotReader:
    """Reads a snapshot through ``read(n)`` (a file's ``read``), hashing as it goes.

    Call :meth:`header`, then read the body with :meth:`read_exact`, then :meth:`finish`.
    """

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._digest = hashlib.sha256()

    def read_exact(self, size: int) -> bytes:
        """Raises:
            SnapshotError: the file ends first (reason ``truncated``)."""
        data = self._read(size)
        if len(data) != size:
            raise SnapshotError("snapshot is truncated", "truncated")
        self._digest.update(data)
        return data

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        return fmt.unpack(self.read_exact(fmt.size))

    def header(self) -> SnapshotMeta:
        """Raises:
            SnapshotError: not this format, or cut off."""
        start = self.read_exact(len(MAGIC) + 8)
        if start[: len(MAGIC)] != MAGIC:
            raise SnapshotError("not a snapshot of this format", "format")
        version, size = struct.unpack("<II", start[len(MAGIC):])
        if version != VERSION or size > _MAX_HEADER:
            raise SnapshotError(f"unsupported snapshot version {version}", "format")
        return SnapshotMeta.from_json(self.read_exact(size))

    def finish(self) -> None:
        """Check the trailer and that nothing follows it.

        Raises:
            SnapshotError: the digest differs (``checksum``), or the file is cut off or longer
                (``truncated``).
        """
        expected = self._digest.digest()
        trailer = self._read(len(TRAILER) + _DIGEST)
        if len(trailer) != len(TRAILER) + _DIGEST or trailer[: len(TRAILER)] != TRAILER:
            raise SnapshotError("snapshot is truncated", "truncated")
        if trailer[len(TRAILER):] != expected:
            raise SnapshotError("snapshot checksum does not match", "checksum")
        if self._read(1):
            raise SnapshotError("snapshot has bytes after its trailer", "truncated")


# --------------------------------------------------------------------------- the DNC body

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_PART = struct.Struct("<IQ")


def _name(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _U32.pack(len(raw)) + raw


def dnc_body(table: DncTable) -> Iterator[bytes]:
    """The DNC table's body: slots, their bitmaps, the expiring entries.

    Serializes one bitmap at a time (a writer holds at most one extra bitmap's bytes); reads
    the table only, so look-ups may go on meanwhile, but nothing may write to it.
    """
    slots = list(table.slots())
    index = {(key_class, target): i for i, (key_class, target, _) in enumerate(slots)}
    yield _U32.pack(len(slots))
    for key_class, target, parts in slots:
        filled = sorted(high for high, part in parts.items() if part)
        yield _name(key_class) + _name(target) + _U32.pack(len(filled))
        for high in filled:
            blob = parts[high].serialize()
            yield _PART.pack(high, len(blob))
            yield blob
    expiring = list(table.expiring_entries())
    yield _U64.pack(len(expiring))
    for start in range(0, len(expiring), _EXPIRY_GROUP):
        yield b"".join(_EXPIRY.pack(index[(c, t)], n, e) for c, t, n, e in expiring[start:start + _EXPIRY_GROUP])


def _read_name(reader: SnapshotReader) -> str:
    (size,) = reader.unpack(_U32)
    if size > _MAX_NAME:
        raise SnapshotError("snapshot holds an overlong list name", "format")
    try:
        return reader.read_exact(size).decode("utf-8")
    except UnicodeDecodeError:
        raise SnapshotError("snapshot holds a list name that is not UTF-8", "format") from None


def read_dnc_body(reader: SnapshotReader) -> DncTable:
    """A DNC table from a body written by :func:`dnc_body` (check :meth:`SnapshotReader.finish`
    before using it).

    Raises:
        SnapshotError: cut off (``truncated``) or malformed (``format``).
    """
    table = DncTable()
    (count,) = reader.unpack(_U32)
    slots: list[tuple[str, str]] = []
    for _ in range(count):
        key_class, target = _read_name(reader), _read_name(reader)
        slots.append((key_class, target))
        (parts,) = reader.unpack(_U32)
        for _ in range(parts):
            high, size = reader.unpack(_PART)
            try:
                part = BitMap.deserialize(reader.read_exact(size))
            except (ValueError, IndexError):
                raise SnapshotError("snapshot holds a bitmap that does not deserialize", "format") from None
            table.restore_part(key_class, target, high, part)
    (expiring,) = reader.unpack(_U64)
    for _ in range(expiring):
        slot, number, expires_ms = reader.unpack(_EXPIRY)
        if slot >= len(slots):
            raise SnapshotError("snapshot holds an expiry of an unknown list", "format")
        table.restore_expiry(*slots[slot], number, expires_ms)
    return table


def read_dnc_snapshot(read: Callable[[int], bytes]) -> tuple[SnapshotMeta, DncTable]:
    """Read a whole DNC snapshot (header, body, trailer); for tools and tests (the shell reads
    the header first to judge it before the body).

    Raises:
        SnapshotError: see :class:`SnapshotReader` and :func:`read_dnc_body`.
    """
    reader = SnapshotReader(read)
    meta = reader.header()
    table = read_dnc_body(reader)
    reader.finish()
    return meta, table
