"""Unit tests for connector.core.phone_fast: the fast path must be sound (never a string phonenumbers
would not give) and complete for the plain spellings CRMs send."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberDesc, PhoneNumberFormat, PhoneNumberType
from phonenumbers.phonenumberutil import (
    _maybe_strip_national_prefix_carrier_code,
    _number_type_helper,
    _set_italian_leading_zeros_for_phone_number,
    _test_number_length,
)

from connector.cli.sample_data import _draw_numbers, render
from connector.core.phone_fast import (
    _code_regions,
    _is_valid,
    _length_verdict,
    _Region,
    _region_parse_info,
    fast_e164,
)
from connector.core.phones import PhoneNormalizer

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
TYPES = [t for name, t in vars(PhoneNumberType).items() if name.isupper() and name != "UNKNOWN"]
COMMON = ("US", "CA", "GB", "DE", "FR", "IN", "BR", "AU", "MX", "ES", "IT")
SEPARATORS = ["", "", "", " ", "-", ".", "(", ")", " - ", ") "]


def _examples() -> list[tuple[str, PhoneNumber]]:
    """Every region's example number of every type, and every non-geographic code's."""
    out: list[tuple[str, PhoneNumber]] = []
    for region in REGIONS:
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                out.append((region, number))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            out.append(("001", number))
    return out


EXAMPLES = _examples()


def slow(text: str, region: str) -> str | None:
    """The reference: phonenumbers' parse + is_valid_number + E.164, None for anything else."""
    try:
        number = phonenumbers.parse(text, region)
    except Exception:  # noqa: BLE001 - any failure of the reference means "no string"
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))


def assert_sound(text: str, region: str) -> str | None:
    fast = fast_e164(text, region)
    if fast is not None:
        assert fast == slow(text, region), (text, region)
    return fast


def _prefixes(region: str) -> list[str]:
    """Digits a spelling may start with in ``region``: trunk prefix, IDD, leading zeros."""
    metadata = PhoneMetadata.metadata_for_region(region)
    out = ["", "0", "00", "1", "8"]
    if metadata is not None:
        out.append(metadata.national_prefix or "")
        out.append(metadata.preferred_international_prefix or "")
        if metadata.international_prefix and metadata.international_prefix.isdigit():
            out.append(metadata.international_prefix)
    return out


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """A phone spelling in the fast path's grammar (mostly), and the region to read it in."""
    if draw(st.booleans()):
        home, number = draw(st.sampled_from(EXAMPLES))
        code = str(number.country_code)
        nsn = phonenumbers.national_significant_number(number)
    else:
        home = draw(st.sampled_from(REGIONS))
        code = str(draw(st.sampled_from(CODES)))
        nsn = draw(st.text("0123456789", min_size=1, max_size=18))
    # Too short or too long, a typo.
    edit = draw(st.sampled_from(["none", "none", "drop", "add", "change"]))
    position = draw(st.integers(0, len(nsn)))
    digit = draw(st.sampled_from("0123456789"))
    if edit == "drop":
        nsn = nsn[:position] + nsn[position + 1:]
    elif edit == "add":
        nsn = nsn[:position] + digit + nsn[position:]
    elif edit == "change":
        nsn = nsn[:position] + digit + nsn[position + 1:]
    region = home if home != "001" and draw(st.booleans()) else draw(st.sampled_from(REGIONS))
    head = draw(st.sampled_from(["+" + code, code, *_prefixes(region), "+", "+0", "+" + code + "0"]))
    body = head + nsn
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(body) + 1, max_size=len(body) + 1))
    # A "+" keeps its place in front; separators go around and between the digits.
    text = "".join(s + c for s, c in zip(seps, body, strict=False)) + seps[-1]
    if body.startswith("+") and draw(st.booleans()):
        text = "+" + text.replace("+", "", 1).lstrip()
    return text.strip(), region


@settings(max_examples=1000, deadline=None)
@given(spellings())
def test_fast_path_agrees_with_phonenumbers(case: tuple[str, str]) -> None:
    text, region = case
    if text:
        assert_sound(text, region)


_noisy = st.text(alphabet="0123456789+-() .\t/x#*,;:extEXT\u00a0\uff11\u0661", min_size=1, max_size=30)


@settings(max_examples=600, deadline=None)
@given(text=st.one_of(_noisy, st.text(min_size=1, max_size=30)), region=st.sampled_from(REGIONS))
def test_any_text_is_never_answered_wrongly(text: str, region: str) -> None:
    text = text.strip()
    if text:
        assert_sound(text, region)


def test_every_example_number_is_sound_and_common_regions_complete() -> None:
    answered = total = 0
    for home, number in EXAMPLES:
        regions = [home] if home != "001" else ["US", "GB"]
        spelled = [phonenumbers.format_number(number, PhoneNumberFormat.E164),
                   phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
                   phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)]
        for region in regions:
            for text in spelled:
                expected = slow(text, region)
                fast = assert_sound(text, region)
                if expected is not None:
                    total += 1
                    answered += fast is not None
                    if home in COMMON:
                        assert fast == expected, (text, region)
    # Only a transform of the national prefix (AR mobile "011 15-...") is left to phonenumbers.
    assert total > 3000
    assert answered >= total - 5


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("+14155550123", "US"),
        ("+1 (415) 555.0123", "US"),
        ("+1 (415) 555.0123", "GB"),  # "+" ignores the region
        ("+44 20 7946 0958", "US"),
        ("+44 (0) 20 7946 0958", "US"),  # the trunk prefix after a country code is dropped
        ("(415) 555-0123", "US"),
        ("415-555-0123", "US"),
        ("4155550123", "US"),
        ("1-415-555-0123", "US"),
        ("1 415 555 0123", "US"),
        ("020 7946 0958", "GB"),
        ("44 20 7946 0958", "GB"),
        ("01 42 68 53 00", "FR"),
        ("02 1234 5678", "IT"),  # Italy keeps its leading zero
        ("+39 06 1234 5678", "US"),
        ("(11) 96123-4567", "BR"),
        ("613-555-0123", "CA"),
        ("+1 613 555 0123", "US"),  # a Canadian number under the shared +1
        ("+7 701 234 5678", "US"),  # Kazakhstan under +7, decided by leading digits
        ("+800 1234 5678", "US"),  # non-geographic calling code
        # Edge rules of parse(), each the only case here that one of them decides:
        ("4400 20 7946 0958", "GB"),  # too long with its calling code, so that is dropped
        ("44 0 20 7946 0958", "GB"),
        ("1 1 415 555 0123", "US"),
        ("49 0 30 123456", "DE"),  # not read as calling code + trunk: +49 49030123456
        ("8 800 555 35 35", "RU"),
        ("8800 555 35 35", "RU"),
        ("7 800 555 35 35", "RU"),  # "800..." keeps its 8: stripping it would leave no valid number
    ],
)
def test_plain_spellings_are_answered(text: str, region: str) -> None:
    expected = slow(text, region)
    assert expected is not None
    assert fast_e164(text, region) == expected


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("", "US"),
        ("+", "US"),
        ("12", "US"),  # fewer than 3 digits
        ("415-555-0123 ext 45", "US"),
        ("415-555-0123 x45", "US"),
        ("415-555-0123#", "US"),
        ("1-800-FLOWERS", "US"),
        ("tel:+1-415-555-0123", "US"),
        ("+1-415-555-0123;ext=1", "US"),
        ("415/555-0123", "US"),
        ("415\t555 0123", "US"),  # phonenumbers rejects an inner tab
        ("415\u00a0555\u00a00123", "US"),
        ("\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13", "US"),  # full-width digits
        ("\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663", "US"),  # Arabic-Indic digits
        ("\uff0b14155550123", "US"),  # full-width plus
        ("++14155550123", "US"),
        ("(+1) 415 555 0123", "US"),  # "+" not in front
        ("011 44 20 7946 0958", "US"),  # IDD prefix
        ("00 44 20 7946 0958", "GB"),
        ("+0 415 555 0123", "US"),  # phonenumbers retries without the "+"
        ("+999 1234567", "US"),  # unknown calling code
        ("+1 212 345 67890123456", "US"),  # too long for E.164
        ("011 15-2345-6789", "AR"),  # national prefix transform: valid, but left to phonenumbers
        ("4155550123", "ZZ"),  # unknown region
        ("3101234", "TT"),  # valid via the "868" transform of a local number: left to phonenumbers
        ("+113101234", "TT"),  # stripping "1" would leave a number of impossible length
        ("01919123456", "IL"),  # "019" is one of Israel's IDD prefixes
    ],
)
def test_anything_else_is_left_to_phonenumbers(text: str, region: str) -> None:
    assert fast_e164(text, region) is None


def test_invalid_numbers_are_not_answered() -> None:
    for text in ("+1 099 555 0123", "+1 415 555 01", "212-345-678", "+44 20 7946 095", "1234567"):
        assert slow(text, "US") is None
        assert fast_e164(text, "US") is None


def test_bench_formats_are_all_answered_and_the_normalizer_agrees() -> None:
    numbers = _draw_numbers(random.Random(7), 300, set())  # noqa: S311 - test data
    normalizer = PhoneNormalizer("US", cache_size=0)
    for i, number in enumerate(numbers):
        for style in ("e164", "national", "messy"):
            text = render(number, style, i).strip()
            expected = slow(text, "US")
            assert expected == f"+1{number}"
            assert fast_e164(text, "US") == expected, text
            assert normalizer.normalize(text) == expected


# The replayed steps one by one, against phonenumbers' own (private) helpers: they also guard
# rules that no current metadata makes matter for a whole spelling.


def test_length_verdicts_match_phonenumbers() -> None:
    for region in REGIONS:
        metadata = PhoneMetadata.metadata_for_region(region)
        assert metadata is not None and metadata.general_desc is not None
        for length in range(25):
            assert _length_verdict(length, metadata.general_desc) == _test_number_length("5" * length, metadata)


@st.composite
def national_digits(draw: st.DrawFn) -> tuple[str, str]:
    region = draw(st.sampled_from(REGIONS))
    metadata = PhoneMetadata.metadata_for_region(region)
    assert metadata is not None
    kind = draw(st.sampled_from(TYPES))
    example = phonenumbers.example_number_for_type(region, kind)
    nsn = phonenumbers.national_significant_number(example) if example else ""
    head = draw(st.sampled_from([*_prefixes(region), "9", "90", "0549", "15"]))
    tail = draw(st.text("0123456789", max_size=12))
    return head + draw(st.sampled_from([nsn, nsn[:-2], tail])), region


@settings(max_examples=500, deadline=None)
@given(national_digits())
def test_national_prefix_strip_matches_phonenumbers(case: tuple[str, str]) -> None:
    number, region = case
    info = _region_parse_info(region)
    metadata = PhoneMetadata.metadata_for_region(region)
    assert info is not None and metadata is not None
    ours = info.strip_national_prefix(number)
    if ours is not None:
        assert ours == _maybe_strip_national_prefix_carrier_code(number, metadata)[1]


@st.composite
def coded_nsns(draw: st.DrawFn) -> tuple[int, str]:
    """An NSN near a real one (a few digits changed, one more or less) of any calling code."""
    home, number = draw(st.sampled_from(EXAMPLES))
    nsn = phonenumbers.national_significant_number(number)
    keep = draw(st.integers(0, len(nsn)))
    tail = draw(st.text("0123456789", min_size=max(0, len(nsn) - keep - 1), max_size=len(nsn) - keep + 1))
    assert number.country_code is not None
    return number.country_code, (nsn[:keep] + tail) or nsn


@settings(max_examples=800, deadline=None)
@given(coded_nsns())
def test_validity_matches_phonenumbers(case: tuple[int, str]) -> None:
    code, nsn = case
    number = PhoneNumber(country_code=code, national_number=int(nsn))
    _set_italian_leading_zeros_for_phone_number(nsn, number)
    assert phonenumbers.national_significant_number(number) == nsn
    assert _is_valid(code, nsn) == phonenumbers.is_valid_number(number), (code, nsn)


def test_every_calling_code_has_its_regions() -> None:
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        assert len(_code_regions(code)) == len(regions)


_PATTERNS = [None, "", r"\d{4,8}", r"[2-5]\d{3,6}", r"5\d{5}", r"(?:1|2[0-4])\d{4}", r"[1-9]\d{2,7}"]
_LENGTHS = [(), (-1,), (4,), (6,), (5, 6, 7), (4, 6, 8)]


@st.composite
def synthetic_descs(draw: st.DrawFn) -> PhoneNumberDesc | None:
    if draw(st.integers(0, 5)) == 0:
        return None
    return PhoneNumberDesc(national_number_pattern=draw(st.sampled_from(_PATTERNS)),
                           possible_length=draw(st.sampled_from(_LENGTHS)))


@settings(max_examples=300, deadline=None)
@given(general=synthetic_descs(), fixed=synthetic_descs(), mobile=synthetic_descs(), toll_free=synthetic_descs(),
       same=st.booleans(), nsn=st.text("0123456789", min_size=2, max_size=9))
def test_type_check_matches_phonenumbers_on_synthetic_metadata(
    general: PhoneNumberDesc | None, fixed: PhoneNumberDesc | None, mobile: PhoneNumberDesc | None,
    toll_free: PhoneNumberDesc | None, same: bool, nsn: str,
) -> None:
    # Metadata no real region has (yet): lengths a pattern ignores, mobile equal to fixed line.
    if same and fixed is not None:
        mobile = PhoneNumberDesc(national_number_pattern=fixed.national_number_pattern,
                                 possible_length=draw_other(fixed.possible_length))
    metadata = PhoneMetadata("XX", general_desc=general, fixed_line=fixed, mobile=mobile, toll_free=toll_free,
                             country_code=999, register=False)
    expected = _number_type_helper(nsn, metadata) != PhoneNumberType.UNKNOWN
    assert _Region(metadata, cc_ok=True).is_valid(nsn) == expected


def draw_other(lengths: tuple[int, ...]) -> tuple[int, ...]:
    """Other possible lengths for the same pattern (as mobile and fixed line may have)."""
    return (5, 6, 7) if lengths != (5, 6, 7) else (4,)


def test_a_large_random_sample_agrees_with_phonenumbers() -> None:
    """20,000 numbers drawn at random around every region's example numbers (a fresh seed
    every run, printed on failure): the fast path answers only what phonenumbers answers."""
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    checked = answered = 0
    for _ in range(20_000):
        home, example = rng.choice(EXAMPLES)
        nsn = list(str(example.national_number))
        for i in rng.sample(range(len(nsn)), k=min(len(nsn), rng.randint(1, 3))):
            nsn[i] = str(rng.randrange(10))  # a neighbour of a valid number: valid or not
        digits = "".join(nsn)
        region = home if home != "001" else "US"
        text = rng.choice([f"+{example.country_code}{digits}", f"+{example.country_code} {digits}",
                           _prefixes(region)[rng.randrange(len(_prefixes(region)))] + digits, digits])
        fast = fast_e164(text, region)
        if fast is not None:
            answered += 1
            assert fast == slow(text, region), (text, region, f"seed {seed}")
        checked += 1
    assert checked == 20_000 and answered > 2_000, f"seed {seed}: only {answered} answered"


def test_the_switch_sends_every_number_through_phonenumbers() -> None:
    fast, slow_only = PhoneNormalizer("US", 0), PhoneNormalizer("US", 0, fast_path=False)
    for text in ("(415) 555-0123", "+44 20 7946 0958", "415.555.0123", "+1 800 555 0199"):
        assert fast.outcome(text, None) == slow_only.outcome(text, None)
    # with the switch off the fast path is never asked
    import connector.core.phones as phones_module

    calls: list[str] = []
    real = phones_module.fast_e164
    phones_module.fast_e164 = lambda text, region: calls.append(text) or real(text, region)  # type: ignore[assignment]
    try:
        PhoneNormalizer("US", 0, fast_path=False).outcome("(415) 555-0124", None)
        PhoneNormalizer("US", 0).outcome("(415) 555-0125", None)
    finally:
        phones_module.fast_e164 = real
    assert calls == ["(415) 555-0125"]
