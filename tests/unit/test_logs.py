"""Phone numbers never reach a log line unmasked."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.ops.logs import JsonFormatter, MaskingFilter, mask_phone


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
