"""The C twins of the decoder's per-record checks answer as their Python originals."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core import windowing
from connector.core.windowing import item_payload_bytes
from connector.pipeline import decoding
from connector.pipeline.decoding import CHANGED_AT_RANGE, validate_record

try:
    from connector.core._record_checks import PayloadSize, Validator
except ImportError:  # pragma: no cover - a build without the C extensions
    NATIVE = False
else:
    NATIVE = True

native = pytest.mark.skipif(not NATIVE, reason="C extension not built")


def test_the_c_checks_were_built_and_are_the_ones_the_decoder_runs() -> None:
    if os.environ.get("CXONE_ALLOW_PURE_PYTHON") == "1":
        pytest.skip("CXONE_ALLOW_PURE_PYTHON=1")
    assert NATIVE
    assert isinstance(decoding.validate, Validator) and isinstance(windowing.measure_item, PayloadSize)


# Text around the bounds and JSON's special characters: quotes, backslashes, controls, non-ASCII.
text = st.text(alphabet=st.sampled_from(['a', 'Z', '0', ' ', '"', '\\', '\n', '\x7f', 'é', '€', '😀']),
               max_size=12) | st.text(max_size=12)
long_text = st.one_of(text, st.integers(0, 400).map(lambda n: "x" * n))
optional = st.none() | long_text
custom = st.dictionaries(long_text, long_text, max_size=4) | st.dictionaries(
    st.sampled_from(["source", "optInDate", "timeZone", "k"]), text, max_size=3) | st.integers(48, 53).map(
    lambda n: {f"k{i}": "v" for i in range(n)})
records = st.fixed_dictionaries({
    "event_id": long_text, "contact_id": long_text, "phone": text, "region_hint": optional,
    "first_name": optional, "last_name": optional, "email": optional, "opted_in": st.booleans(),
    "changed_at": st.integers(-(2**63), 2**63 - 1) | st.sampled_from(CHANGED_AT_RANGE) | st.sampled_from(
        [CHANGED_AT_RANGE[0] - 1, CHANGED_AT_RANGE[1] + 1]),
    "source": long_text, "custom_fields": custom,
    "time_zone": optional | long_text, "zip_code": optional, "state": optional | long_text,
})


@native
@settings(max_examples=1500, deadline=None)
@given(key=st.none() | st.binary(max_size=300), record=records)
def test_the_validator_answers_as_validate_record(key: bytes | None, record: dict[str, Any]) -> None:
    assert decoding.validate(key, record) == validate_record(key, record)


@native
@settings(max_examples=1500, deadline=None)
@given(phone=text, first=optional, last=optional, email=optional, fields=custom, source=long_text,
       zone=st.sampled_from(["", "America/Chicago"]) | text)
def test_the_payload_size_answers_as_item_payload_bytes(phone: str, first: str | None, last: str | None,
                                                        email: str | None, fields: dict[str, str],
                                                        source: str, zone: str) -> None:
    assert windowing.measure_item(phone, first, last, email, fields, source, zone) == item_payload_bytes(
        phone, first, last, email, fields, source, zone)
    assert windowing.measure_item(phone, first, last, email, fields, source) == item_payload_bytes(
        phone, first, last, email, fields, source)
