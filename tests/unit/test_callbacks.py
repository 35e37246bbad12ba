"""Pure parts of the webhook callbacks: signature, ids, body and result records."""

from __future__ import annotations

import hashlib
import hmac
import json

from connector.pipeline.callbacks import callback_result, delivery_id_for, encode_summary, sign, verify


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"batch_id":"b-1"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == f"sha256={expected}"
    assert verify(body, "s3cret", f"sha256={expected}")
    assert not verify(body + b" ", "s3cret", f"sha256={expected}")
    assert not verify(body, "other", f"sha256={expected}")


def test_summary_encoding_is_stable() -> None:
    a = encode_summary({"b": 1, "a": [1, 2]})
    assert a == encode_summary({"a": [1, 2], "b": 1}) == b'{"a":[1,2],"b":1}'
    assert json.loads(a) == {"a": [1, 2], "b": 1}


def test_delivery_ids_are_stable_per_key_and_url() -> None:
    assert delivery_id_for("k", "http://h/x") == delivery_id_for("k", "http://h/x")
    assert delivery_id_for("k", "http://h/x") != delivery_id_for("k", "http://h/y")
    assert delivery_id_for("k", "http://h/x") != delivery_id_for("k2", "http://h/x")


def test_callback_result_record_keeps_only_the_host() -> None:
    record = callback_result(
        delivery_id="d", batch_id="b", job_ids=("j1", "j2"), outcome="FAILED",
        url="https://hooks.example.com:8443/secret/path?token=abc", http_status=503, attempts=5,
        latency_ms=1200, time_ms=1_700_000_000_000, error="ServerError: HTTP 503",
    )
    assert record == {
        "delivery_id": "d", "batch_id": "b", "job_ids": ["j1", "j2"], "outcome": "FAILED",
        "url_host": "hooks.example.com", "http_status": 503, "attempts": 5, "latency_ms": 1200,
        "time": 1_700_000_000_000, "error": "ServerError: HTTP 503",
    }
    assert "abc" not in json.dumps(record)
