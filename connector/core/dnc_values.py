"""Reading a ``DncEntry`` value (``schemas/DncEntry.avsc``) exactly, and fast.

The materialiser needs two fields of each value: ``list_name`` (for a legacy bare-number
key, the list the number is on) and ``expires_at``. It must also know whether the value is
readable at all: a record with a valid number and an unreadable value blocks that number
(``dnc.unreadable_list``), so "readable" must mean exactly what the schema says, never more.

:func:`read_dnc_value` walks the four fields of the schemaless record (``string``,
``["null", "string"]``, ``long``, ``["null", "long"]``) and accepts exactly the bytes that
fastavro's ``schemaless_reader`` reads as a complete ``DncEntry`` with nothing left over,
returning the same values, with two deliberate differences: a varint longer than 10 bytes, or
one whose value does not fit in 64 signed bits, is refused (fastavro silently wraps it to 64
bits), and so is a union index other than 0 or 1 (fastavro reads -1 and -2 as Python list
indexes, from the end). Refusing is the safe side here: the number is then blocked as
unreadable.
``tests/unit/test_dnc_values.py`` checks this against fastavro with hypothesis.

Values repeat: a bulk load writes one value for every number of a list. :class:`ValueReader`
keeps the latest distinct values it read in a bounded dictionary, so a repeated value costs
one dictionary look-up.

Pure: standard library only.
"""

from __future__ import annotations

from typing import Literal

from connector.errors import SerdeError

#: A DncEntry's ``(list_name, expires_at)``.
Entry = tuple[str, int | None]
WireFormat = Literal["avro", "confluent", "auto"]

_MAX_VARINT_BYTES = 10
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
#: Distinct values :class:`ValueReader` remembers before it starts over.
CACHE_SIZE = 4096


def _long(data: bytes, pos: int, size: int, what: str) -> tuple[int, int]:
    """The zig-zag varint at ``pos``: ``(value, next position)``.

    Raises:
        SerdeError: cut off, longer than 10 bytes, or outside 64 signed bits.
    """
    if pos >= size:
        raise SerdeError(f"truncated: DncEntry {what} is cut off")
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    acc = b & 0x7F
    shift = 7
    end = pos + 1
    while b & 0x80:
        if end >= size:
            raise SerdeError(f"truncated: DncEntry {what} is cut off")
        if end - pos >= _MAX_VARINT_BYTES:
            raise SerdeError(f"malformed: DncEntry {what} varint longer than 10 bytes")
        b = data[end]
        end += 1
        acc |= (b & 0x7F) << shift
        shift += 7
    value = (acc >> 1) ^ -(acc & 1)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise SerdeError(f"malformed: DncEntry {what} is outside 64 bits")
    return value, end


def _string(data: bytes, pos: int, size: int, what: str) -> tuple[str, int]:
    length, pos = _long(data, pos, size, what)
    if length < 0:
        raise SerdeError(f"malformed: DncEntry {what} has a negative length")
    end = pos + length
    if end > size:
        raise SerdeError(f"truncated: DncEntry {what} needs {length} bytes, {size - pos} left")
    try:
        return data[pos:end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise SerdeError(f"non-UTF-8 string: DncEntry {what} at byte {exc.start}") from None


def _branch(data: bytes, pos: int, size: int, what: str) -> tuple[bool, int]:
    """A ``["null", X]`` union's index: ``(is X, next position)``."""
    index, pos = _long(data, pos, size, what)
    if index not in (0, 1):
        raise SerdeError(f"malformed: DncEntry {what} union branch out of range")
    return index == 1, pos


def read_dnc_value(data: bytes, start: int = 0) -> Entry:
    """``(list_name, expires_at)`` of the schemaless ``DncEntry`` in ``data[start:]``.

    Raises:
        SerdeError: empty, truncated, malformed (a negative length, a union branch out of
            range, a varint over 10 bytes or 64 bits), a string that is not UTF-8, or
            trailing bytes after the record. The message never contains the value's bytes.
    """
    size = len(data)
    if size <= start:
        raise SerdeError("empty: no bytes to decode")
    list_name, pos = _string(data, start, size, "list_name")
    has_reason, pos = _branch(data, pos, size, "reason")
    if has_reason:
        _, pos = _string(data, pos, size, "reason")
    _, pos = _long(data, pos, size, "added_at")
    has_expiry, pos = _branch(data, pos, size, "expires_at")
    expires_at: int | None = None
    if has_expiry:
        expires_at, pos = _long(data, pos, size, "expires_at")
    if pos != size:
        raise SerdeError(f"trailing bytes: {size - pos} bytes after a complete DncEntry record")
    return list_name, expires_at


class ValueReader:
    """Reads DNC values in one wire format, remembering the last :data:`CACHE_SIZE` distinct
    readable ones (a bulk load repeats one value for every number).

    Args:
        wire_format: ``avro`` (schemaless), ``confluent`` (magic byte 0 and a 4-byte schema
            id, then the schemaless record; the id is not looked up: the record must read
            with this schema) or ``auto`` (framed when it starts with byte 0 and has 5 bytes
            or more, the rule of :class:`connector.serde.codec.AvroCodec`).
    """

    __slots__ = ("_cache", "_format")

    def __init__(self, wire_format: WireFormat = "avro") -> None:
        if wire_format not in ("avro", "confluent", "auto"):
            raise ValueError(f"unknown wire format {wire_format!r}")
        self._format = wire_format
        self._cache: dict[bytes, Entry] = {}

    def read(self, value: bytes) -> Entry:
        """``(list_name, expires_at)`` of ``value``.

        Raises:
            SerdeError: see :func:`read_dnc_value`; also a missing or short frame header
                with ``confluent``.
        """
        found = self._cache.get(value)
        if found is not None:
            return found
        start = 0
        fmt = self._format
        if fmt == "confluent":
            if value[:1] != b"\x00":
                raise SerdeError("wrong magic byte: expected 0x00 (Confluent framing)")
            if len(value) < 5:
                raise SerdeError(f"truncated: {len(value)} bytes, a Confluent frame header needs 5")
            start = 5
        elif fmt == "auto" and value[:1] == b"\x00" and len(value) >= 5:
            start = 5
        entry = read_dnc_value(value, start)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[value] = entry
        return entry
