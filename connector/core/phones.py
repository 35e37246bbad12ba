"""Phone numbers to E.164, with a bounded cache so repeated numbers cost a dict look-up.

Pure: phonenumbers only, no I/O. A CRM sends the same numbers again and again (every
change of a contact repeats its phone), so both results and rejections are cached, keyed
by ``(raw, region_hint)``.

Rejection reasons (bounded, usable as metric labels):

- ``empty``: nothing but whitespace;
- ``too_long``: longer than :data:`MAX_RAW_LENGTH` characters, or too many digits;
- ``unparseable``: non-printable characters, or phonenumbers cannot read it;
- ``not_possible``: the wrong length for its country;
- ``invalid``: a possible length, but no such number range exists.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from connector.core.phone_fast import SEPARATORS, fast_e164
from connector.errors import PhoneError

#: Input longer than this is rejected before parsing: no real phone needs it, and it keeps
#: hostile input from costing a parse.
MAX_RAW_LENGTH = 64

#: What :meth:`PhoneNormalizer.normalize` always returns.
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")

_E164 = PhoneNumberFormat.E164


def mask_phone(raw: str) -> str:
    """Mask a phone number for logs and error messages: only the last 2 digits stay.

    The output length does not depend on the input, so it reveals nothing but those digits.
    """
    digits = [c for c in raw[-MAX_RAW_LENGTH:] if c.isascii() and c.isdigit()]
    return "***" + "".join(digits[-2:])


# A phone-like run in free text: optional +, then 7 or more digits possibly separated by
# space, dot, dash or parentheses, not glued to letters or digits (so the digits inside a
# UUID or a hex id are left alone).
_PHONE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])\+?\(?\d(?:[\s().-]?\d){6,}(?![0-9A-Za-z])")


def mask_phones_in(text: str) -> str:
    """Mask every phone-like run in free text (log lines, error messages, DLQ headers),
    keeping its last two digits: ``call +1 415 555 0123 now`` -> ``call *********23 now``."""

    def repl(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return "*" * (len(digits) - 2) + digits[-2:]

    return _PHONE_IN_TEXT.sub(repl, text)


class PhoneNormalizer:
    """Normalise raw CRM phone strings to E.164.

    The event's region hint is tried first, then the default region. Results and rejections
    are cached in two generations of at most ``cache_size // 2`` entries each: new entries
    and hits from the old generation go to the young one; when the young one is full it
    becomes the old one and the old one is dropped whole. Eviction costs nothing per entry
    (an ordered dict's per-insert bookkeeping cost more than a phone's fast parse), and a
    number used within the last ``cache_size // 2`` insertions is always kept.

    Args:
        default_region: ISO 3166 region for national-format numbers without a usable hint.
        cache_size: most entries kept in the cache; 0 disables it.
        fast_path: try the exact fast path for plain spellings first (``phones.fast_path``).

    Raises:
        ValueError: ``default_region`` is not a region phonenumbers knows, or
            ``cache_size`` is negative.
    """

    __slots__ = ("_cache_size", "_code", "_default", "_fast_path", "_half", "_old", "_prefix", "_young", "hits",
                 "misses")

    def __init__(self, default_region: str = "US", cache_size: int = 1_000_000, *, fast_path: bool = True) -> None:
        region = default_region.upper()
        self._fast_path = fast_path
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown default region {default_region!r}")
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._default = region
        self._code, self._prefix = _country_code_and_prefix(region)
        self._cache_size = cache_size
        self._half = max(1, cache_size // 2)
        # Value: the E.164 string, or (reason, message) for a rejection. Keys are plain
        # strings (the spelling, plus "\x00" and the hint when one matters): a tuple per entry
        # would cost 56 bytes more, and the cache may hold a million.
        self._young: dict[str, Outcome] = {}
        self._old: dict[str, Outcome] = {}
        self.hits = 0
        self.misses = 0

    @property
    def default_region(self) -> str:
        """The region used for national-format numbers."""
        return self._default

    def cache_len(self) -> int:
        """How many entries the cache holds now (at most ``cache_size``; a key moved up from
        the old generation counts twice until the old one is dropped)."""
        return len(self._young) + len(self._old)

    def normalize(self, raw: str, region_hint: str | None = None) -> str:
        """Return ``raw`` as E.164, for example ``"+14155550123"``.

        Args:
            raw: the phone as the CRM holds it (any punctuation, national or international).
            region_hint: the event's ISO 3166 region, tried before the default region;
                an unknown region is ignored.

        Returns:
            A string matching :data:`E164_RE`.

        Raises:
            PhoneError: the number cannot be normalised; ``reason`` says why. The message
                shows only the last 2 digits.
        """
        if not isinstance(raw, str) or not (region_hint is None or isinstance(region_hint, str)):
            raise PhoneError("phone or region hint is not a string", reason="unparseable")
        result = self.outcome(raw, region_hint)
        if isinstance(result, str):
            return result
        raise PhoneError(result[1], reason=result[0])

    def outcome(self, raw: str, region_hint: str | None) -> Outcome:
        """:meth:`normalize` without raising (the decoder's hot path; strings only).

        Returns:
            The E.164 string, or ``(reason, message)`` for a number that cannot be normalised.
        """
        key = raw if region_hint is None else f"{raw}\x00{region_hint}"
        cached = self._get(key)
        if cached is not None:
            self.hits += 1
            return cached
        # The same number in another spelling ("(212) 345-6789" after "212-345-6789") costs a
        # look-up too: a success is cached under the bare digits when the spelling has a digits
        # form (one entry for all spellings). Rejections only as written, so an odd spelling
        # can never reject a number that parses.
        canon = _canonical(raw, region_hint, self._default)
        if canon == key:  # an E.164 spelling is its own canonical key: nothing more to look up
            canon = None
        if canon is not None:
            known = self._get(canon)
            if isinstance(known, str):
                self.hits += 1
                self._put(key, known)  # the next time this spelling costs one look-up
                return known
        self.misses += 1
        result = parse_phone(raw, region_hint, self._default, fast_path=self._fast_path)
        if self._cache_size:
            if isinstance(result, str):
                # Every digits-only spelling that parses to this very number shares the entry:
                # international (+CC NSN), and, for a number of the default region, national
                # (NSN) and trunk-prefixed (1 NSN, 0 NSN): one parse per number, not per spelling.
                for alias in self._aliases(result):
                    self._put(alias, result)
                if canon is not None:
                    self._put(canon, result)
            self._put(key, result)
        return result

    def _get(self, key: str) -> Outcome | None:
        value = self._young.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self._put(key, value)  # used again: keep it past the next generation change
        return value

    def _put(self, key: str, value: Outcome) -> None:
        young = self._young
        young[key] = value
        if len(young) >= self._half:
            self._old = young
            self._young = {}

    def _aliases(self, e164: str) -> list[str]:
        """Cache keys of the other digits-only spellings that parse to ``e164``.

        A national spelling read in the default region gets the default region's country
        code; when that is this number's country code it is the very same number (so the
        same validity), whichever region of a shared code (NANP's +1) it belongs to.
        """
        keys = [e164]
        code, prefix = self._code, self._prefix
        if e164.startswith(code, 1):
            nsn = e164[1 + len(code):]
            if not nsn.startswith("0"):  # a leading zero would be read as a trunk prefix
                keys.append(nsn)
                if prefix:
                    keys.append(prefix + nsn)
        return keys


#: What :func:`parse_phone` returns: the E.164 string, or ``(reason, message)``.
Outcome = str | tuple[str, str]


def parse_phone(raw: str, region_hint: str | None, default_region: str, *, fast_path: bool = True) -> Outcome:
    """Parse one phone with phonenumbers, uncached (a cache miss).

    Args:
        fast_path: try :func:`connector.core.phone_fast.fast_e164` first (``phones.fast_path``);
            False: phonenumbers only.

    Returns:
        The E.164 string, or ``(reason, message)`` when it cannot be normalised (the
        message masks the number).
    """
    try:
        return _parse(raw, region_hint, default_region, fast_path)
    except PhoneError as exc:
        return (exc.reason, str(exc))


def _parse(raw: str, region_hint: str | None, default: str, fast_path: bool = True) -> str:
    if len(raw) > MAX_RAW_LENGTH:
        raise PhoneError(f"phone longer than {MAX_RAW_LENGTH} characters", reason="too_long")
    text = raw.strip()
    if not text:
        raise PhoneError("phone is empty", reason="empty")
    if not text.isprintable():
        raise PhoneError(f"phone {mask_phone(text)} has non-printable characters", reason="unparseable")
    regions: list[str] = []
    if region_hint:
        hint = region_hint.strip().upper()
        if hint in phonenumbers.SUPPORTED_REGIONS:
            regions.append(hint)
    if default not in regions:
        regions.append(default)
    if text.startswith("+"):
        # International format: the region does not matter.
        regions = regions[:1]
    errors: list[PhoneError] = []
    for region in regions:
        try:
            return _parse_in(text, region, fast_path)
        except PhoneError as exc:
            errors.append(exc)
    # The hint's error is the most telling one.
    raise errors[0]


@functools.cache
def _country_code_and_prefix(region: str) -> tuple[str, str]:
    """``region``'s country code and trunk prefix: ("1", "1") for US, ("44", "0") for GB."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = metadata.national_prefix if metadata is not None else None
    code = str(phonenumbers.country_code_for_region(region))
    return code, prefix if isinstance(prefix, str) and prefix.isdigit() else ""


def _canonical(raw: str, region_hint: str | None, default: str) -> str | None:
    """The cache key of ``raw`` by its digits alone, when punctuation is all it holds besides them.

    ``+`` and digits ignore the region; bare digits keep a hint that changes the parse. None for anything else
    (letters, extensions, other symbols): such input is only cached as written.
    """
    if raw[:1] == "+" and raw.isascii() and raw[1:].isdigit():
        return raw  # already canonical: the usual E.164 spelling
    text = raw.strip()
    plus = text.startswith("+")
    digits = (text[1:] if plus else text).translate(SEPARATORS)
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    if plus:
        return "+" + digits
    # Only a supported hint other than the default changes the parse (see ``_parse``).
    hint = region_hint.strip().upper() if region_hint else None
    return f"{digits}\x00{hint}" if hint in phonenumbers.SUPPORTED_REGIONS and hint != default else digits


def _parse_in(text: str, region: str, fast_path: bool = True) -> str:
    """Parse ``text`` in ``region`` and return E.164.

    Raises:
        PhoneError: unparseable, not possible or invalid in this region (the message masks
            the number; masking only on failure keeps the hot path short).
    """
    # Plain spellings of valid numbers take the exact fast path; the rest (and every
    # rejection) goes through phonenumbers, which words the reason.
    fast = fast_e164(text, region) if fast_path else None
    if fast is not None:
        return fast
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        reason = "too_long" if exc.error_type == NumberParseException.TOO_LONG else "unparseable"
        raise PhoneError(f"phone {mask_phone(text)} cannot be parsed (region {region})",
                         reason=reason) from None
    # Validity first: a valid number is always a possible one, and most numbers are valid, so
    # the possible-length check only runs to word a rejection.
    if not phonenumbers.is_valid_number(number):
        if not phonenumbers.is_possible_number(number):
            raise PhoneError(f"phone {mask_phone(text)} is not a possible number (region {region})",
                             reason="not_possible")
        raise PhoneError(f"phone {mask_phone(text)} is not a valid number (region {region})",
                         reason="invalid")
    e164 = str(phonenumbers.format_number(number, _E164))
    if E164_RE.match(e164) is None:
        # Defensive: phonenumbers accepted something E.164 cannot hold.
        raise PhoneError(f"phone {mask_phone(text)} has no E.164 form", reason="invalid")
    return e164
