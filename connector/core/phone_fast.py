"""A fast path for the common phone spellings, exactly equivalent to phonenumbers.

:func:`fast_e164` answers ``parse`` + ``is_valid_number`` + ``format_number(E164)`` in a few
microseconds instead of ~40, for input made of ASCII digits, an optional leading ``+`` and the
separators space, ``-``, ``(``, ``)`` and ``.``. It replays phonenumbers' own steps for that
grammar, reading phonenumbers' metadata at run time (nothing about number ranges is written
here), and returns None wherever a step could do something it does not replay (an IDD
prefix, a national prefix transform, a carrier code, a ``+0`` retry, ...). None is always
safe: the caller then runs phonenumbers itself.

Sound, not complete: a string is returned only when phonenumbers would parse the text, call
the number valid and format it to that very string.

Pure: phonenumbers and re only, no I/O. Metadata is compiled lazily, per region and per
calling code, into small dicts (building an entry twice in a race is harmless).
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc

#: phonenumbers refuses longer input (``_MAX_INPUT_STRING_LENGTH``).
_MAX_INPUT = 250
#: phonenumbers' bounds on a national significant number (``_MIN/_MAX_LENGTH_FOR_NSN``).
_MIN_NSN = 2
_MAX_NSN = 17
#: E.164 holds at most 15 digits: "+" and 15.
_MAX_E164 = 16
#: Deletes the separators a plain spelling may hold; all are phonenumbers punctuation, which
#: it drops. Tab is not (phonenumbers rejects an inner tab), nor are "/", "[", "~" and the
#: like: left to it. Also the cache's notion of a digits-only spelling (``connector.core.phones``).
SEPARATORS = str.maketrans("", "", " -().")
#: Calling codes by their digits: "1" -> 1, "44" -> 44.
_CALLING_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
#: Constructs that would change meaning when a pattern is spliced into a larger one.
_UNSPLICEABLE = re.compile(r"\\[1-9]|\(\?[^:]")


class _Unsupported(Exception):
    """Metadata this module does not replay; the region or code is left to phonenumbers."""


class _ParseInfo:
    """What parsing needs from one metadata: prefixes, general pattern, length verdicts."""

    __slots__ = ("cc", "cc_str", "general", "idd", "keep_strip", "npp", "too_long", "transform")

    def __init__(self, metadata: PhoneMetadata) -> None:
        general = metadata.general_desc
        if metadata.country_code is None or general is None or not general.possible_length:
            raise _Unsupported(metadata.id)
        self.cc = metadata.country_code
        self.cc_str = str(self.cc)
        pattern = general.national_number_pattern
        self.general = re.compile(pattern) if pattern else None
        # phonenumbers uses "NonMatch" when there is no IDD: it never matches digits.
        idd = metadata.international_prefix
        self.idd = re.compile(idd) if idd is not None else None
        npp = metadata.national_prefix_for_parsing
        self.npp = re.compile(npp) if npp else None
        self.transform = bool(metadata.national_prefix_transform_rule)
        verdicts = [_length_verdict(n, general) for n in range(_MAX_INPUT + 1)]
        # parse() keeps a national-prefix strip unless the rest is too short, local-only or
        # of an invalid length; it strips a leading calling code when the whole is too long.
        self.keep_strip = tuple(v in (_POSSIBLE, _TOO_LONG) for v in verdicts)
        self.too_long = tuple(v == _TOO_LONG for v in verdicts)

    def general_match(self, number: str) -> bool:
        """``_match_national_number(number, general_desc, False)``."""
        return self.general is not None and self.general.fullmatch(number) is not None

    def strip_national_prefix(self, number: str) -> str | None:
        """``_maybe_strip_national_prefix_carrier_code``'s number, or None for a transform."""
        if not number or self.npp is None:
            return number
        match = self.npp.match(number)
        if match is None:
            return number
        if self.transform:
            groups = match.groups()
            if not groups or groups[-1] is not None:
                return None  # the transform branch (or phonenumbers' IndexError): not replayed
        rest = number[match.end():]
        if self.general_match(number) and not self.general_match(rest):
            return number
        return rest


# _test_number_length's verdicts.
_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE
_LOCAL_ONLY = phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY
_TOO_SHORT = phonenumbers.ValidationResult.TOO_SHORT
_TOO_LONG = phonenumbers.ValidationResult.TOO_LONG
_INVALID_LENGTH = phonenumbers.ValidationResult.INVALID_LENGTH


def _length_verdict(length: int, general: PhoneNumberDesc) -> int:
    """``_test_number_length(number, metadata)`` for the UNKNOWN type, by length alone."""
    lengths = general.possible_length
    if length in general.possible_length_local_only:
        return _LOCAL_ONLY
    if lengths[0] == length:
        return _POSSIBLE
    if lengths[0] > length:
        return _TOO_SHORT
    if lengths[-1] < length:
        return _TOO_LONG
    return _POSSIBLE if length in lengths[1:] else _INVALID_LENGTH


def _allows(desc: PhoneNumberDesc | None, length: int) -> str | None:
    """The pattern ``_is_number_matching_desc`` would try for this length, if any."""
    if desc is None or not desc.national_number_pattern:
        return None
    if desc.possible_length and length not in desc.possible_length:
        return None  # (-1,) means "no such numbers": no length matches it
    return desc.national_number_pattern


class _Region:
    """What validation needs from one region of a calling code."""

    __slots__ = ("cc_ok", "leading", "metadata", "valid_by_length")

    def __init__(self, metadata: PhoneMetadata, cc_ok: bool) -> None:
        self.metadata = metadata
        self.cc_ok = cc_ok
        self.leading = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
        self.valid_by_length: dict[int, re.Pattern[str] | None] = {}

    def is_valid(self, nsn: str) -> bool:
        """``_number_type_helper(nsn, metadata) != UNKNOWN``."""
        length = len(nsn)
        try:
            pattern = self.valid_by_length[length]
        except KeyError:
            pattern = self.valid_by_length[length] = self._validity_pattern(length)
        return pattern is not None and pattern.fullmatch(nsn) is not None

    def _validity_pattern(self, length: int) -> re.Pattern[str] | None:
        # The general desc must match, and so must one type desc that allows this length
        # (mobile only counts when its pattern differs from fixed line's): one regex, with
        # the general pattern as a lookahead anchored at the end.
        md = self.metadata
        general = _allows(md.general_desc, length)
        descs = [md.premium_rate, md.toll_free, md.shared_cost, md.voip, md.personal_number, md.pager,
                 md.uan, md.voicemail, md.fixed_line]
        if not md.same_mobile_and_fixed_line_pattern:
            descs.append(md.mobile)
        types = [p for p in (_allows(d, length) for d in descs) if p is not None]
        if general is None or not types:
            return None
        if any(_UNSPLICEABLE.search(p) for p in (general, *types)):
            return None  # cannot be spliced safely: such numbers go to phonenumbers
        alternatives = "|".join(f"(?:{p})" for p in types)
        try:
            return re.compile(f"(?=(?:{general})\\Z)(?:{alternatives})")
        except re.error:
            return None


_PARSE_BY_REGION: dict[str, _ParseInfo | None] = {}
_PARSE_BY_CODE: dict[int, _ParseInfo | None] = {}
_REGIONS_BY_CODE: dict[int, tuple[_Region, ...]] = {}


def _parse_info(metadata: PhoneMetadata | None) -> _ParseInfo | None:
    if metadata is None:
        return None
    try:
        return _ParseInfo(metadata)
    except (_Unsupported, re.error):
        return None


def _region_parse_info(region: str) -> _ParseInfo | None:
    try:
        return _PARSE_BY_REGION[region]
    except KeyError:
        info = None
        if region in phonenumbers.SUPPORTED_REGIONS:
            info = _parse_info(PhoneMetadata.metadata_for_region(region, None))
        _PARSE_BY_REGION[region] = info
        return info


def _code_parse_info(code: int) -> _ParseInfo | None:
    """The metadata parse() switches to once it has a calling code: its main region's."""
    try:
        return _PARSE_BY_CODE[code]
    except KeyError:
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
        info = _parse_info(PhoneMetadata.metadata_for_region_or_calling_code(code, regions[0])) if regions else None
        _PARSE_BY_CODE[code] = info
        return info


def _code_regions(code: int) -> tuple[_Region, ...]:
    try:
        return _REGIONS_BY_CODE[code]
    except KeyError:
        pass
    found: list[_Region] = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ()):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        try:
            if metadata is None:
                raise _Unsupported(region)
            cc_ok = region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY or metadata.country_code == code
            found.append(_Region(metadata, cc_ok))
        except (_Unsupported, re.error):
            # No region of this code can be chosen exactly (nor a lone one validated): the
            # whole code is left to phonenumbers.
            found = []
            break
    regions = tuple(found)
    _REGIONS_BY_CODE[code] = regions
    return regions


def _is_valid(code: int, nsn: str) -> bool:
    """``is_valid_number`` for a number of calling code ``code`` and this NSN."""
    regions = _code_regions(code)
    if len(regions) == 1:
        # region_code_for_number takes a lone region without looking at the number.
        return regions[0].cc_ok and regions[0].is_valid(nsn)
    for region in regions:
        if region.leading is not None:
            # A region with leading digits is chosen by them alone, then validated.
            if region.leading.match(nsn):
                return region.cc_ok and region.is_valid(nsn)
        elif region.is_valid(nsn):
            return region.cc_ok
    return False


def fast_e164(text: str, region: str) -> str | None:
    """E.164 of ``text`` read in ``region``, when it is a plain spelling of a valid number.

    Equivalent to ``parse(text, region)`` + ``is_valid_number`` + ``format_number(E164)``
    wherever it answers.

    Args:
        text: the phone, stripped (``+`` counts only as the first character).
        region: an upper-case region code from ``phonenumbers.SUPPORTED_REGIONS``.

    Returns:
        The E.164 string phonenumbers would give, or None when the number is not valid, is
        not spelled in the grammar handled here, needs a step not replayed here, or has no
        E.164 form (more than 15 digits). Never raises for a ``str`` input.
    """
    if not text or len(text) > _MAX_INPUT:
        return None
    plus = text[0] == "+"
    digits = (text[1:] if plus else text).translate(SEPARATORS)
    # Fewer than 3 digits may fail parse()'s viability check: left to it.
    if len(digits) < 3 or not digits.isascii() or not digits.isdigit():
        return None
    info: _ParseInfo | None
    if plus:
        if digits[0] == "0":
            return None  # parse() retries such a number as national: not replayed
        for size in (1, 2, 3):
            code = _CALLING_CODES.get(digits[:size])
            if code is not None:
                break
        else:
            return None  # unknown calling code: parse() retries without "+"
        info = _code_parse_info(code)
        national = digits[size:]
    else:
        info = _region_parse_info(region)
        if info is None:
            return None
        if info.idd is not None:
            idd = info.idd.match(digits)
            if idd is not None and (idd.end() >= len(digits) or digits[idd.end()] != "0"):
                return None  # read as an IDD prefix: not replayed
        national = digits
        if digits.startswith(info.cc_str):
            # The region's own calling code without "+" (1-415-555-0123 in US).
            rest = info.strip_national_prefix(digits[len(info.cc_str):])
            if rest is None:
                return None
            if (not info.general_match(digits) and info.general_match(rest)) or info.too_long[len(digits)]:
                national = rest
                info = _code_parse_info(info.cc)
    if info is None or len(national) < _MIN_NSN:
        return None
    stripped = info.strip_national_prefix(national)
    if stripped is None:
        return None
    if stripped is not national and info.keep_strip[len(stripped)]:
        national = stripped
    # Digits only, so the national significant number is ``national`` as is, leading zeros
    # included (parse() records them as Italian leading zeros).
    if len(national) > _MAX_NSN or not _is_valid(info.cc, national):
        return None
    e164 = f"+{info.cc_str}{national}"
    return e164 if len(e164) <= _MAX_E164 else None
