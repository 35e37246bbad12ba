"""Kafka Connect dead-letter headers: names, values, preservation, bounds, masking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.errors import PhoneError
from connector.kafka import dlq_headers as dlq


def build(message: str = "bad", original=None, **kw) -> list[tuple[str, bytes]]:
    args = {"topic": "crm.contacts.optin", "partition": 3, "offset": 42, "stage": "decode",
            "error_class": "connector.errors.SerdeError", "message": message}
    args.update(kw)
    return dlq.build_dlq_headers(original, **args)


def test_connect_header_names_and_values() -> None:
    headers = build("truncated: 3 bytes")
    assert dict(headers) == {
        "__connect.errors.topic": b"crm.contacts.optin",
        "__connect.errors.partition": b"3",
        "__connect.errors.offset": b"42",
        "__connect.errors.exception.class.name": b"connector.errors.SerdeError",
        "__connect.errors.exception.message": b"truncated: 3 bytes",
        "__connect.errors.stage": b"decode",
    }


def test_original_headers_preserved_first_and_old_errors_replaced() -> None:
    original = [("trace", b"abc"), ("empty", None), ("__connect.errors.stage", b"old"), ("trace", b"2")]
    headers = build(original=original)
    assert headers[:3] == [("trace", b"abc"), ("empty", b""), ("trace", b"2")]
    stages = [v for k, v in headers if k == dlq.STAGE]
    assert stages == [b"decode"]


def test_message_is_truncated_to_the_bound_without_splitting_characters() -> None:
    headers = dict(build("é" * 5000))
    value = headers[dlq.EXCEPTION_MESSAGE]
    assert len(value) <= dlq.MAX_MESSAGE_BYTES
    assert value.endswith(b"...")
    value.decode("utf-8")  # still valid UTF-8


def test_phone_numbers_in_messages_are_masked() -> None:
    headers = dlq.header_dict(build("phone +1 415-555-0123 is not valid; offset 12"))
    message = headers[dlq.EXCEPTION_MESSAGE]
    assert "4155550123" not in message.replace("-", "").replace(" ", "")
    assert message.endswith("not valid; offset 12")
    assert "23 is not valid" in message


def test_error_class_name_is_qualified() -> None:
    assert dlq.error_class_name(PhoneError("x", reason="invalid")) == "connector.errors.PhoneError"
    assert dlq.error_class_name(ValueError) == "builtins.ValueError"


@given(
    message=st.text(max_size=3000),
    stage=st.text(max_size=300),
    original=st.lists(st.tuples(st.text(max_size=20), st.one_of(st.none(), st.binary(max_size=50))),
                      max_size=5),
)
def test_any_input_gives_bounded_valid_headers(message: str, stage: str, original) -> None:
    headers = build(message, original=original, stage=stage)
    names = [k for k, _ in headers]
    for name in (dlq.TOPIC, dlq.PARTITION, dlq.OFFSET, dlq.EXCEPTION_CLASS, dlq.EXCEPTION_MESSAGE, dlq.STAGE):
        assert names.count(name) == 1
    values = dict(headers)
    assert len(values[dlq.EXCEPTION_MESSAGE]) <= dlq.MAX_MESSAGE_BYTES
    assert len(values[dlq.STAGE]) <= dlq.MAX_NAME_BYTES
    values[dlq.EXCEPTION_MESSAGE].decode("utf-8")
    kept = [(k, v or b"") for k, v in original if not k.startswith(dlq.PREFIX)]
    assert headers[: len(kept)] == kept


@given(st.text(max_size=200), st.integers(min_value=0, max_value=300))
def test_truncate_utf8_never_exceeds_limit(text: str, limit: int) -> None:
    out = dlq.truncate_utf8(text, limit)
    assert len(out) <= limit
    out.decode("utf-8")
    if len(text.encode("utf-8", errors="replace")) <= limit:
        assert out == text.encode("utf-8", errors="replace")
