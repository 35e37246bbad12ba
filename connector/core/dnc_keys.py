"""Record keys of the compacted DNC topic: one entry per list **and** number.

Compaction keeps the last record per key, so a key that held only the number would let
one list's tombstone unblock a number that another list still holds (a CRM opt-out later
also written by a registry load, then dropped by the registry). The key therefore carries
both: ``"<list>/<E.164>"``, for example ``national/+14155550100``. A number held by two
lists has two keys; a tombstone of one removes it from that list only.

Legacy topics keyed by the bare number (``+14155550100``) keep working: such a record is an
entry of the list named in its value (:attr:`DncKey.list_name` is None, the caller reads it
from the value). See ``docs/topics.md`` and the migration in ``docs/operations.md``.

Pure: the number is normalised by an injected callable (the DNC default region's
:meth:`connector.core.phones.PhoneNormalizer.normalize`), so a key in another spelling
(``national/(415) 555-0100``) is read as the number it spells before it is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

#: Between the list name and the number.
SEPARATOR = "/"
#: A list name: letters, digits, ``.``, ``_`` and ``-``, 1 to 64 characters.
LIST_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_E164_RE = re.compile(r"^\+[1-9][0-9]{1,14}$")

#: ``normalise(spelling) -> E.164`` or None when it is not a valid number.
Normalise = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class DncKey:
    """A parsed DNC record key.

    Attributes:
        e164: the number, in E.164.
        list_name: the list the key names, or None for a legacy bare-number key (the list is
            then the one named in the record's value).
        respelled: True when the key spelled the number in another form than E.164 (a
            producer bug worth a warning, not a reason to drop the entry).
    """

    e164: str
    list_name: str | None
    respelled: bool = False


class DncKeyError(ValueError):
    """A DNC record key that names no number (or an invalid list).

    Attributes:
        reason: a bounded code usable as a metric label: ``missing``, ``not_utf8``,
            ``bad_list``, ``not_a_number``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def valid_list_name(name: str) -> bool:
    """Whether ``name`` may be a DNC list name (:data:`LIST_NAME_RE`)."""
    return bool(LIST_NAME_RE.match(name))


def dnc_key(list_name: str, e164: str) -> bytes:
    """The record key of ``e164`` on ``list_name``.

    Raises:
        ValueError: ``list_name`` is not a valid list name, or ``e164`` is not E.164.
    """
    if not valid_list_name(list_name):
        raise ValueError("not a valid DNC list name")
    if not _E164_RE.match(e164):
        raise ValueError("not an E.164 number")
    return f"{list_name}{SEPARATOR}{e164}".encode("ascii")


def parse_dnc_key(key: bytes | None, normalise: Normalise) -> DncKey:
    """Read a DNC record key: ``<list>/<number>`` or a legacy bare number.

    Args:
        key: the record key.
        normalise: turns another spelling of a number into E.164 (None when invalid).

    Returns:
        The number and the list the key names (None for a bare-number key).

    Raises:
        DncKeyError: the key is missing, not UTF-8, names an invalid list, or holds no valid
            number in any spelling. The message never contains the key itself.
    """
    if not key:
        raise DncKeyError("DNC record without a key", "missing")
    if 3 <= len(key) <= 16 and key[:1] == b"+" and key[1:].isdigit() and key[1:2] != b"0":
        return DncKey(key.decode("ascii"), None)  # the legacy fast path: a bare E.164 key
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise DncKeyError("DNC key is not UTF-8", "not_utf8") from None
    list_name: str | None = None
    spelling = text
    if SEPARATOR in text:
        list_name, _, spelling = text.rpartition(SEPARATOR)
        if not valid_list_name(list_name):
            raise DncKeyError("DNC key names an invalid list", "bad_list")
    if _E164_RE.match(spelling):
        return DncKey(spelling, list_name)
    e164 = normalise(spelling)
    if e164 is None:
        raise DncKeyError("DNC key holds no valid phone number", "not_a_number")
    return DncKey(e164, list_name, respelled=True)
