"""connector.cli.sample_data: deterministic synthetic events and their expected outcome."""

from __future__ import annotations

from collections import Counter

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as pn_timezone

from connector.cli.sample_data import (
    INVALID_PHONES,
    NPA_LOCATIONS,
    VALID_NPAS,
    SampleData,
    SampleSpec,
    generate,
    render,
)
from connector.core.phones import PhoneNormalizer
from connector.errors import PhoneError
from connector.pipeline.decoding import OK, Decoder, DecodeSpec
from connector.serde.codec import AvroCodec

SPEC = SampleSpec(count=3000, contacts=600, national_share=0.3, messy_share=0.2, invalid_share=0.05,
                  dnc_share=0.2, opt_out_share=0.1, extra_dnc=500, seed=7)


@pytest.fixture(scope="module")
def data() -> SampleData:
    return generate(SPEC)


def test_same_seed_same_data_other_seed_other_data(data: SampleData) -> None:
    again = generate(SPEC)
    assert again.events == data.events and again.dnc == data.dnc and again.expected == data.expected
    other = generate(SampleSpec(**{**SPEC.__dict__, "seed": 8}))
    assert other.events != data.events


def test_counts_and_every_contact_appears(data: SampleData) -> None:
    assert len(data.events) == SPEC.count
    assert len(data.expected) == SPEC.contacts
    assert {e.key for e in data.events} == set(data.expected)
    assert len({e.value["event_id"] for e in data.events if e.value}) == SPEC.count
    s = data.stats
    assert s["e164_format"] + s["national_format"] + s["messy_format"] + s["invalid_events"] == SPEC.count
    # Shares land near what was asked (binomial noise on a few thousand draws).
    valid_events = SPEC.count - s["invalid_events"]
    assert 0.22 < s["national_format"] / valid_events < 0.38
    assert 0.14 < s["messy_format"] / valid_events < 0.26
    assert 0.06 < s["opt_out_events"] / SPEC.count < 0.14
    assert 0 < s["invalid_contacts"] < 0.1 * SPEC.contacts


def test_every_valid_number_normalises_to_its_expected_e164(data: SampleData) -> None:
    norm = PhoneNormalizer("US", cache_size=0)
    for ev in data.events:
        assert ev.value is not None
        exp = data.expected[ev.key]
        if exp.e164 is None:
            assert ev.value["phone"] in INVALID_PHONES
            with pytest.raises(PhoneError):
                norm.normalize(ev.value["phone"], ev.value["region_hint"])
        else:
            assert norm.normalize(ev.value["phone"], ev.value["region_hint"]) == exp.e164


@pytest.mark.parametrize("raw", INVALID_PHONES)
def test_invalid_phones_are_rejected(raw: str) -> None:
    with pytest.raises(PhoneError):
        PhoneNormalizer("US", cache_size=0).normalize(raw)


def test_render_styles_all_parse_to_the_same_number() -> None:
    for npa in VALID_NPAS:
        number = npa * 10_000_000 + 2_345_678
        for style in ("e164", "national", "messy"):
            for variant in range(8):
                parsed = phonenumbers.parse(render(number, style, variant), "US")
                assert phonenumbers.is_valid_number(parsed)
                e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                assert e164 == f"+1{number}"


def test_dnc_entries(data: SampleData) -> None:
    keys = [d.key for d in data.dnc]
    assert len(keys) == len(set(keys)) == data.stats["dnc_contact_numbers"] + SPEC.extra_dnc
    contact_numbers = {c.e164 for c in data.expected.values() if c.e164}
    on_dnc = {c.e164 for c in data.expected.values() if c.on_dnc}
    assert on_dnc == set(keys) & contact_numbers
    assert len(set(keys) - contact_numbers) == SPEC.extra_dnc
    valid = len(contact_numbers)
    assert abs(len(on_dnc) - round(valid * SPEC.dnc_share)) <= 1
    codec = AvroCodec("DncEntry")
    for rec in data.dnc:
        assert rec.value is not None and rec.value["list_name"] == SPEC.dnc_list
        assert codec.decode(codec.encode(rec.value))["list_name"] == SPEC.dnc_list


def test_expected_is_last_event_and_compliance(data: SampleData) -> None:
    last: dict[str, dict[str, object]] = {}
    for ev in data.events:
        assert ev.value is not None
        last[ev.key] = ev.value
    for cid, exp in data.expected.items():
        assert exp.last_event_id == last[cid]["event_id"]
        assert exp.opted_in == last[cid]["opted_in"]
        assert exp.compliant == (exp.opted_in and exp.e164 is not None and not exp.on_dnc)
    assert data.compliant_contacts == {c for c, e in data.expected.items() if e.compliant}
    assert 0 < len(data.compliant_contacts) < SPEC.contacts
    assert data.stats["expected_compliant"] == len(data.compliant_contacts)


def test_events_encode_with_the_schema(data: SampleData) -> None:
    codec = AvroCodec("ContactOptInChanged")
    for ev in data.events[:200]:
        assert ev.value is not None
        assert codec.decode(codec.encode(ev.value)) == ev.value


@pytest.mark.parametrize(
    "bad",
    [{"count": -1}, {"contacts": 0}, {"national_share": 1.5}, {"national_share": 0.6, "messy_share": 0.5},
     {"dnc_share": -0.1}, {"region": "GB"}],
)
def test_invalid_specs(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        generate(SampleSpec(**{**SampleSpec().__dict__, **bad}))


@given(
    count=st.integers(0, 60), contacts=st.integers(1, 20), seed=st.integers(0, 2**32),
    opt_out=st.floats(0, 1), invalid=st.floats(0, 1), dnc=st.floats(0, 1),
)
@settings(max_examples=60, deadline=None)
def test_expectations_match_a_reference_model(
    count: int, contacts: int, seed: int, opt_out: float, invalid: float, dnc: float
) -> None:
    data = generate(SampleSpec(count=count, contacts=contacts, seed=seed, opt_out_share=opt_out,
                               invalid_share=invalid, dnc_share=dnc))
    dnc_keys = {d.key for d in data.dnc}
    norm = PhoneNormalizer("US", cache_size=0)
    final: dict[str, bool] = {}
    phones: dict[str, str | None] = {}
    for ev in data.events:
        assert ev.value is not None
        final[ev.key] = bool(ev.value["opted_in"])
        try:
            phones[ev.key] = norm.normalize(ev.value["phone"], ev.value["region_hint"])
        except PhoneError:
            phones[ev.key] = None
    model = {c for c in final if final[c] and phones[c] is not None and phones[c] not in dnc_keys}
    assert data.compliant_contacts == model


def test_every_valid_event_resolves_to_its_contacts_expected_time_zone_from_each_source(data: SampleData) -> None:
    codec = AvroCodec("ContactOptInChanged")
    decoder = Decoder(DecodeSpec(wire_format="avro", cache_size=3000))
    decoded = decoder.decode_many([(ev.key.encode(), codec.encode(ev.value)) for ev in data.events if ev.value])
    sources: Counter[str] = Counter()
    for ev, out in zip(data.events, decoded, strict=True):
        exp = data.expected[ev.key]
        if exp.e164 is None:
            assert out[0] != OK
            continue
        assert out[0] == OK
        if out[3]:  # an opt-in: resolved to the zone its area code is in, whatever the source
            assert out[6] == exp.time_zone, (ev.value, out[6:])
            sources[out[7]] += 1
    assert set(sources) == {"event", "zip", "state", "number"}
    assert min(sources.values()) > 0.2 * sum(sources.values())
    s = data.stats
    assert 0.2 < s["time_zone_events"] / SPEC.count < 0.3 and 0.2 < s["zip_code_events"] / SPEC.count < 0.3
    assert all(exp.time_zone is not None for exp in data.expected.values() if exp.compliant)


def test_the_area_code_table_agrees_with_phonenumbers() -> None:
    assert set(NPA_LOCATIONS) == set(VALID_NPAS)
    for npa, (zone, _, _) in NPA_LOCATIONS.items():
        assert pn_timezone.time_zones_for_number(phonenumbers.parse(f"+1{npa}2345678")) == (zone,)
