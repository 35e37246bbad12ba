"""Phone numbers never reach a log line unmasked."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.ops.logs import JsonFormatter, MaskingFilter, PlainFormatter, mask_phone, register_secret, scrub


@pytest.mark.parametrize(
    "raw",
    ["+14155550123", "(415) 555-0123", "415.555.0123", "+44 20 7946 0958", "0049 30 1234567"],
)
def test_mask_phone_keeps_only_last_two_digits(raw: str) -> None:
    masked = mask_phone(f"number {raw} rejected")
    digits = "".join(c for c in raw if c.isdigit())
    assert digits not in masked.replace("*", "")
    assert masked.endswith(f"{digits[-2:]} rejected")


def test_short_numbers_stay_readable() -> None:
    assert mask_phone("partition 3 offset 12345 batch 42") == "partition 3 offset 12345 batch 42"


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_any_e164_number_is_masked(number: str) -> None:
    assert number[1:-2] not in mask_phone(f"x {number} y")


def test_filter_masks_arguments_and_json_output() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "sent %s to %s", ("+14155550123", "list"), None)
    assert MaskingFilter().filter(record)
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["message"] == "sent *********23 to list"
    assert data["level"] == "INFO"


def test_ids_with_digits_are_not_mistaken_for_phone_numbers() -> None:
    text = "job 3f2a8bb4-5d1c-4e2a-9f0b-8bb4809972b1 and batch b-403e859d14769c77 failed"
    assert mask_phone(text) == text


def _failing_record(message: str) -> logging.LogRecord:
    try:
        raise ValueError("CXone said: +14155550123 is not allowed, token sekret-token-123")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    return logging.LogRecord("t", logging.ERROR, __file__, 1, message, None, exc_info)


def test_both_formatters_mask_tracebacks_and_the_json_one_every_extra_field() -> None:
    register_secret("sekret-token-123", rotating=True)
    record = _failing_record("submit failed")
    record.body = "number (415) 555-0199 refused"  # an ``extra`` field
    record.count = 3
    plain = PlainFormatter().format(record)
    as_json = json.loads(JsonFormatter().format(record))
    for text in (plain, as_json["exc"], as_json["body"]):
        assert "4155550123" not in text.replace(" ", "") and "5550199" not in text.replace("-", "")
        assert "sekret-token-123" not in text
    assert "<redacted>" in plain and as_json["count"] == 3 and "Traceback" in plain


def test_scrub_redacts_configured_secrets_and_keeps_the_latest_tokens_only() -> None:
    register_secret("client-secret-xyz")
    register_secret("short")  # too short to redact safely: ignored
    assert scrub("auth client-secret-xyz for +14155550123 short") == "auth <redacted> for *********23 short"
    for i in range(40):
        register_secret(f"token-number-{i:04d}", rotating=True)
    assert scrub("token-number-0039") == "<redacted>"
    assert scrub("token-number-0000") == "token-number-0000"  # rotated out: the registry is bounded
