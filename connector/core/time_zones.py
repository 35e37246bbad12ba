"""A contact's time zone, for calling hours (47 CFR 64.1200(c)(1): 8 a.m. to 9 p.m. local time).

Pure: the standard library's ``zoneinfo`` (the names of the host's tz database, read once),
``phonenumbers`` and the generated tables of :mod:`connector.core.time_zone_data`; no clock,
no network. :class:`TimeZoneResolver` answers, per record, in this order (the first that
gives a zone wins; its name is the *source*, a metric label):

1. ``event``: the CRM event's ``time_zone``, when it is a zone the tz database knows (any
   letter case; the canonical spelling is sent). ``Factory`` and ``localtime`` are not zones.
2. ``zip``: the event's ``zip_code`` (``12345``, ``12345-6789``, ``12345 6789`` or
   ``123456789``): the zone of that ZIP code in the table, else the zone most ZIP codes of its
   three-digit prefix are in. A prefix the table does not hold gives nothing.
3. ``state``: the event's ``state`` (USPS code or name, any case). A state within one offset
   class (zones that keep the same UTC offset all year) gives its most common zone. For a
   state that spans two (Texas, Florida, Kentucky, ...), the number's zone picks the class
   when phonenumbers gives exactly one zone and it is in one of the state's classes; otherwise
   the class with the most ZIP codes (a proxy for where most people live) is taken.
4. ``number``: phonenumbers' zones for the E.164 number, only when it gives exactly one
   (``+1 212 ...`` is ``America/New_York``; a US toll-free number, or a UK number with its four
   zones, gives none).
5. ``default``: the configured default zone, when one is set.
6. ``unknown``: none of these; the zone is ``""``.

Per-record cost: a few dict look-ups. phonenumbers' answer (~14-27 µs) is computed once per
number and kept in a bounded two-generation cache (as :class:`connector.core.phones.PhoneNormalizer`
keeps its results); numbers of a country whose every number has the same single zone skip
phonenumbers altogether.
"""

from __future__ import annotations

import functools
import re
import zoneinfo

import phonenumbers
from phonenumbers import timezone as pn_timezone
from phonenumbers import tzdata as pn_tzdata

from connector.core import time_zone_data as data

SOURCE_EVENT = "event"
SOURCE_ZIP = "zip"
SOURCE_STATE = "state"
SOURCE_NUMBER = "number"
SOURCE_DEFAULT = "default"
SOURCE_UNKNOWN = "unknown"
#: Every source, in resolution order (the bounded values of the metric's ``source`` label).
SOURCES = (SOURCE_EVENT, SOURCE_ZIP, SOURCE_STATE, SOURCE_NUMBER, SOURCE_DEFAULT, SOURCE_UNKNOWN)

#: Names in the tz database that are not places.
_NOT_ZONES = frozenset({"Factory", "localtime", "posixrules"})
#: Longest accepted input of each field (anything longer gives nothing, cheaply).
_MAX_ZONE, _MAX_ZIP, _MAX_STATE = 64, 16, 40
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_UNKNOWN_ZONE = "Etc/Unknown"


@functools.cache
def known_zones() -> dict[str, str]:
    """The tz database's zone names by their lower-case spelling (read once per process).

    Empty when the host has no tz database (``zoneinfo`` finds neither the system's nor the
    ``tzdata`` package's): then no event zone is accepted, and the other sources still work.
    """
    return {name.lower(): name for name in zoneinfo.available_timezones() - _NOT_ZONES}


def canonical_zone(name: object) -> str | None:
    """``name`` as the tz database spells it, or None when it is not a zone it knows."""
    if not isinstance(name, str) or not name or len(name) > _MAX_ZONE:
        return None
    return known_zones().get(name.strip().lower())


def zip5(zip_code: object) -> str | None:
    """The five-digit ZIP code of ``12345``, ``12345-6789``, ``12345 6789`` or ``123456789``."""
    if not isinstance(zip_code, str) or len(zip_code) > _MAX_ZIP:
        return None
    text = zip_code.strip()
    if not text.isascii():
        return None
    n = len(text)
    if (n == 5 or n == 9) and text.isdigit():
        return text[:5]
    if n == 10 and text[5] in "- " and text[:5].isdigit() and text[6:].isdigit():
        return text[:5]
    return None


def zone_for_zip(zip_code: object) -> str | None:
    """The zone of a ZIP code (its own, else its prefix's), or None."""
    code = zip5(zip_code)
    if code is None:
        return None
    return data.ZIP5.get(code) or data.ZIP3.get(code[:3])


def state_code(state: object) -> str | None:
    """The USPS code of a state or territory given by code or name (any case), or None."""
    if not isinstance(state, str) or not state or len(state) > _MAX_STATE:
        return None
    text = state.strip().upper()
    if text in data.STATES:
        return text
    return data.STATE_NAMES.get(" ".join(text.split()))


def zone_for_state(code: str, number_zone: str | None) -> str:
    """The zone of the state ``code`` (a key of the table), by the rule in the module docstring.

    Args:
        code: a USPS code from :func:`state_code`.
        number_zone: the number's single zone, or None (used only when the state spans classes).

    Raises:
        KeyError: ``code`` is not in the table.
    """
    classes = data.STATES[code]
    if len(classes) > 1 and number_zone is not None:
        wanted = data.ZONE_CLASS.get(number_zone)
        for cls, zone, _ in classes:
            if cls == wanted:
                return zone
    return classes[0][1]


def _uniform_country_zones() -> dict[str, str]:
    """Country calling codes whose every number has the same one zone in phonenumbers' data.

    For such a code, ``time_zones_for_number`` of any valid number is that zone: both its
    geographic answer (the longest matching prefix) and its country-level one come from keys
    that are prefixes of the code's numbers, and they all hold the same single zone.
    """
    codes = {str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    values: dict[str, set[tuple[str, ...]]] = {code: set() for code in codes}
    for key, zones in pn_tzdata.TIMEZONE_DATA.items():
        for code in (key[:1], key[:2], key[:3]):  # the code this key's numbers have
            if code in values and key.startswith(code):
                values[code].add(tuple(zones))
                break
        else:  # a key shorter than a code: a prefix of every number of the codes it starts
            for code in codes:
                if code.startswith(key):
                    values[code].add(tuple(zones))
    out: dict[str, str] = {}
    for code, found in values.items():
        if len(found) == 1:
            (zones,) = found
            if len(zones) == 1 and zones[0] != _UNKNOWN_ZONE:
                out[code] = zones[0]
    return out


@functools.cache
def _uniform() -> dict[str, str]:
    return _uniform_country_zones()


def single_zone(zones: tuple[str, ...] | list[str]) -> str | None:
    """The one zone of a phonenumbers answer, or None for none, several or ``Etc/Unknown``."""
    if len(zones) != 1 or zones[0] == _UNKNOWN_ZONE:
        return None
    return zones[0]


def number_zone(e164: object) -> str | None:
    """phonenumbers' zone of a valid E.164 number when it gives exactly one, uncached.

    Never raises: anything that is not an E.164 string, or that phonenumbers cannot read,
    gives None.
    """
    if not isinstance(e164, str) or not _E164.fullmatch(e164):
        return None
    uniform = _uniform()
    for length in (1, 2, 3):
        zone = uniform.get(e164[1:1 + length])
        if zone is not None:
            return zone
    try:
        if e164.startswith("+1"):  # NANP: no leading zeros, so the number is its digits
            numobj = phonenumbers.PhoneNumber(country_code=1, national_number=int(e164[2:]))
        else:
            numobj = phonenumbers.parse(e164)
        return single_zone(pn_timezone.time_zones_for_number(numobj))
    except Exception:  # phonenumbers on odd input: no zone, never a failed record
        return None


class TimeZoneResolver:
    """Resolves each record's time zone (see the module docstring for the order).

    Args:
        default_time_zone: the zone of a record no source resolves; ``""`` leaves it unknown.
        cache_size: numbers whose phonenumbers answer is kept (two generations of half each);
            0 disables the cache.

    Raises:
        ValueError: ``default_time_zone`` is not a zone the tz database knows, or
            ``cache_size`` is negative.
    """

    __slots__ = ("_default", "_half", "_old", "_size", "_young", "misses")

    def __init__(self, default_time_zone: str = "", cache_size: int = 200_000) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        default = ""
        if default_time_zone:
            found = canonical_zone(default_time_zone)
            if found is None:
                raise ValueError("default_time_zone is not a zone the tz database knows")
            default = found
        self._default = default
        known_zones()  # read once now (a decode worker builds its resolver before its first chunk)
        _uniform()
        self._size = cache_size
        self._half = max(1, cache_size // 2)
        # value: the zone, or "" for none (a miss is None)
        self._young: dict[str, str] = {}
        self._old: dict[str, str] = {}
        self.misses = 0

    @property
    def default_time_zone(self) -> str:
        """The configured default zone (canonical spelling), ``""`` when none."""
        return self._default

    def number_zone(self, e164: str) -> str | None:
        """:func:`number_zone`, cached per number."""
        zone = self._young.get(e164)
        if zone is None:
            zone = self._old.get(e164)
            if zone is None:
                self.misses += 1
                zone = number_zone(e164) or ""
            if self._size:
                young = self._young
                young[e164] = zone
                if len(young) >= self._half:
                    self._old = young
                    self._young = {}
        return zone or None

    def resolve(self, time_zone: str | None, zip_code: str | None, state: str | None,
                e164: str) -> tuple[str, str]:
        """The record's zone and its source; never raises, whatever the inputs.

        Args:
            time_zone: the event's zone, if any.
            zip_code: the event's ZIP code, if any.
            state: the event's state, if any.
            e164: the normalised number.

        Returns:
            ``(zone, source)``: the zone's canonical name (``""`` when unknown) and one of
            :data:`SOURCES`.
        """
        if time_zone:
            zone = canonical_zone(time_zone)
            if zone is not None:
                return zone, SOURCE_EVENT
        if zip_code:
            zone = zone_for_zip(zip_code)
            if zone is not None:
                return zone, SOURCE_ZIP
        if state:
            code = state_code(state)
            if code is not None:
                number = self.number_zone(e164) if len(data.STATES[code]) > 1 else None
                return zone_for_state(code, number), SOURCE_STATE
        zone = self.number_zone(e164)
        if zone is not None:
            return zone, SOURCE_NUMBER
        if self._default:
            return self._default, SOURCE_DEFAULT
        return "", SOURCE_UNKNOWN
