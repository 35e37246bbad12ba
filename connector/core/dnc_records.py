"""What each record of the DNC topic means: the pure decision half of the DNC materialiser.

:class:`DncRecordDecoder` takes one consumed batch, in consume order, as values (anything
with confluent-kafka's ``Message`` methods: ``error()``, ``partition()``, ``offset()``,
``key()``, ``value()``; :class:`Record` builds one) and returns a :class:`Decoded`: the
table operations (:class:`connector.core.dnc_table.TableOp`, in order), the dead letters,
where each partition got to, and counters. It does no I/O and keeps no state but caches.

The rules, per record:

- **The key** names a list and a number (``national/+14155550100``) or, legacy, the bare
  number (:mod:`connector.core.dnc_keys`). A number in another spelling is normalised with
  the DNC default region first (counted as ``respelled``). A key that names no number at all
  (or an invalid list) is dead-lettered with its reason (``missing``, ``not_utf8``,
  ``bad_list``, ``not_a_number``) and changes nothing.
- **A tombstone** (null value) removes the number from the key's list only; a bare-key one
  removes what that bare key added.
- **A value** is read exactly (:mod:`connector.core.dnc_values`). Readable: the number is
  blocked under the key's list (a bare key: under the value's ``list_name``, or ``unnamed``
  when empty). A value whose ``expires_at`` has already passed removes the entry instead.
  Unreadable: the number is **blocked** under ``unreadable_list`` (as an entry of the key's
  class, so a later good record or tombstone of the same key replaces it) and the record is
  dead-lettered (reason ``unreadable``): when we cannot be sure, the number is not called.
- **Error events** (``error()`` not None): the end-of-partition event (``eof_code``) says where
  the partition ends; any other is handed back to the caller.

Consecutive records of one key class, list and expiry become one operation, so a bulk load
is a few bitmap updates per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from connector.core.dnc_keys import SEPARATOR, DncKeyError, Normalise, parse_dnc_key
from connector.core.dnc_materialiser import ConsumedRecord, DeadLetter, Decoded
from connector.core.dnc_table import BARE, TableOp
from connector.core.dnc_values import ValueReader, WireFormat
from connector.errors import SerdeError

_dnc_scan: ModuleType | None
try:  # built by ``pip install`` where a C compiler is found (setup.py)
    import connector.core._dnc_scan as _dnc_scan
except ImportError:  # pragma: no cover - a build without the C extension
    _dnc_scan = None

#: True when the C twin of :meth:`DncRecordDecoder.decode_py` was built and is used.
NATIVE = _dnc_scan is not None

#: The list of a bare-key entry whose value names none.
UNNAMED = "unnamed"
#: Dead-letter reasons (bounded; metric label values).
KEY_REASONS = ("missing", "not_utf8", "bad_list", "not_a_number")
UNREADABLE = "unreadable"
REJECT_REASONS = (*KEY_REASONS, UNREADABLE)
#: Distinct list-name prefixes remembered by the key fast path.
_MAX_LISTS = 1024
_SEP = SEPARATOR.encode("ascii")[0]
_PLUS = ord("+")
_ZERO = ord("0")


class DncRecordDecoder:
    """Turns consumed DNC records into table operations (see the module docstring).

    Args:
        normalise: another spelling of a number to E.164, or None (the DNC default region's
            normaliser).
        unreadable_list: the list a number with an unreadable value is blocked under.
        wire_format: of the values (:class:`connector.core.dnc_values.ValueReader`).
        eof_code: the error code of the end-of-partition event (librdkafka's
            ``_PARTITION_EOF``).
    """

    def __init__(self, normalise: Normalise, *, unreadable_list: str = UNREADABLE,
                 wire_format: WireFormat = "avro", eof_code: int = -191) -> None:
        self._normalise = normalise
        self._unreadable = unreadable_list
        self._values = ValueReader(wire_format)
        self._eof = eof_code
        #: list-name prefix of a key (bytes) -> the list name
        self._lists: dict[bytes, str] = {}

    def decode(self, records: Sequence[ConsumedRecord], now_ms: int) -> Decoded[TableOp]:
        """Decode one batch in consume order; ``now_ms`` (epoch ms) decides what has expired.

        Runs the C twin (``connector/core/_dnc_scan.pyx``) when it was built: the same answer,
        each operation's numbers an ``array('Q')``; else :meth:`decode_py`.
        """
        if _dnc_scan is not None:
            out: Decoded[TableOp] = Decoded()
            _dnc_scan.scan(self, records if isinstance(records, list) else list(records), now_ms, out,
                           TableOp, DeadLetter)
            return out
        return self.decode_py(records, now_ms)

    def decode_py(self, records: Sequence[ConsumedRecord], now_ms: int) -> Decoded[TableOp]:
        """:meth:`decode` in Python: the reference, and the fallback without the C twin."""
        out: Decoded[TableOp] = Decoded()
        counts = dict.fromkeys(("upsert", "delete", "expired", "respelled", "list_mismatch", *REJECT_REASONS), 0)
        run: list[int] = []
        run_key: tuple[str, str | None, int | None] | None = None
        for record in records:
            err = record.error()
            if err is not None:
                self._event(record, err, out)
                continue
            out.ends[record.partition() or 0] = (record.offset() or 0) + 1
            out.records += 1
            key = record.key()
            parsed = self._fast_key(key) or self._slow_key(record, key, counts, out)
            if parsed is None:
                continue
            key_class, number = parsed
            target, expiry = self._meaning(record, key_class, now_ms, counts, out)
            if (key_class, target, expiry) == run_key:
                run.append(number)
                continue
            if run_key is not None:
                out.ops.append(TableOp(*run_key[:2], run, run_key[2]))
            run, run_key = [number], (key_class, target, expiry)
        if run_key is not None:
            out.ops.append(TableOp(*run_key[:2], run, run_key[2]))
        out.counts = counts
        return out

    def _fast_key(self, key: bytes | None) -> tuple[str, int] | None:
        """``(key class, number)`` of ``<known list>/+<digits>`` or a bare ``+<digits>``; None
        for anything else (the slow path decides)."""
        if not key:
            return None
        sep = key.find(_SEP)
        if sep > 0:
            known = self._lists.get(key[:sep])
            digits = key[sep + 2:]
            if known is not None and key[sep + 1] == _PLUS and 2 <= len(digits) <= 15 and digits.isdigit() \
                    and digits[0] != _ZERO:
                return known, int(digits)
        elif sep < 0 and key[0] == _PLUS:
            digits = key[1:]
            if 2 <= len(digits) <= 15 and digits.isdigit() and digits[0] != _ZERO:
                return BARE, int(digits)
        return None

    def _meaning(self, record: ConsumedRecord, key_class: str, now_ms: int, counts: dict[str, int],
                 out: Decoded[TableOp]) -> tuple[str | None, int | None]:
        """``(target list or None for a removal, expiry)`` of the record's value."""
        value = record.value()
        if value is None:
            counts["delete"] += 1
            return None, None
        try:
            name, expiry = self._values.read(value)
        except SerdeError as exc:
            counts[UNREADABLE] += 1
            out.dead_letters.append(DeadLetter(record, record.partition() or 0, record.offset() or 0,
                                               "connector.errors.SerdeError", str(exc), UNREADABLE))
            return self._unreadable, None
        if key_class and name != key_class:
            counts["list_mismatch"] += 1
        if expiry is not None and expiry <= now_ms:
            counts["expired"] += 1
            return None, None
        counts["upsert"] += 1
        return key_class or name or UNNAMED, expiry

    def _event(self, record: ConsumedRecord, err: Any, out: Decoded[TableOp]) -> None:
        partition = record.partition()
        partition = -1 if partition is None else partition
        if err.code() == self._eof:
            out.eofs[partition] = record.offset() or 0
        else:
            out.errors.append((partition, err))

    def _slow_key(self, record: ConsumedRecord, key: bytes | None, counts: dict[str, int],
                  out: Decoded[TableOp]) -> tuple[str, int] | None:
        """:func:`connector.core.dnc_keys.parse_dnc_key`: ``(key class, number)``, or None after
        dead-lettering a key that names no number."""
        try:
            parsed = parse_dnc_key(key, self._normalise)
        except DncKeyError as exc:
            counts[exc.reason] = counts.get(exc.reason, 0) + 1
            out.dead_letters.append(DeadLetter(record, record.partition() or 0, record.offset() or 0,
                                               "connector.core.dnc_keys.DncKeyError", str(exc), exc.reason))
            return None
        if parsed.respelled:
            counts["respelled"] += 1
        if parsed.list_name is None:
            return BARE, int(parsed.e164[1:])
        if key is not None and len(self._lists) < _MAX_LISTS:
            self._lists[key[: key.find(_SEP)]] = parsed.list_name
        return parsed.list_name, int(parsed.e164[1:])
