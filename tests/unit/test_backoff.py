"""Backoff delays and the retriable-or-fatal classifier."""

from __future__ import annotations

import itertools
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.cxone.backoff import (
    RETRY_AFTER_CAP_S,
    backoff,
    equal_jitter,
    error_for_exception,
    error_for_status,
    full_jitter,
    no_jitter,
    parse_retry_after,
    retry_delay,
)
from connector.cxone.exceptions import (
    AuthError,
    ClientError,
    RateLimitedError,
    ServerError,
    TransportError,
)


def test_backoff_is_capped_exponential_without_jitter() -> None:
    assert list(itertools.islice(backoff(0.5, 4.0, jitter=no_jitter), 6)) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_factor_three() -> None:
    assert list(itertools.islice(backoff(1, 100, factor=3, jitter=no_jitter), 4)) == [1, 3, 9, 27]


def test_backoff_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        next(backoff(-1, 1))
    with pytest.raises(ValueError):
        next(backoff(1, 1, factor=0.5))


@given(st.floats(0, 10), st.floats(0, 100), st.floats(1, 5), st.integers(1, 30))
def test_full_jitter_delays_stay_within_bounds(initial: float, maximum: float, factor: float, n: int) -> None:
    delays = list(itertools.islice(backoff(initial, maximum, factor, full_jitter), n))
    assert len(delays) == n
    uncapped = list(itertools.islice(backoff(initial, maximum, factor, no_jitter), n))
    for got, ceiling in zip(delays, uncapped, strict=True):
        assert 0.0 <= got <= ceiling <= maximum


@given(st.floats(0, 1000))
def test_equal_jitter_is_at_least_half(delay: float) -> None:
    assert delay / 2 <= equal_jitter(delay) <= delay


def test_injected_jitter_is_used() -> None:
    assert list(itertools.islice(backoff(1, 8, jitter=lambda d: d / 4), 3)) == [0.25, 0.5, 1.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("5", 5.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None),
     ("99999999", RETRY_AFTER_CAP_S), ("nan", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=0.0) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=1_700_000_000.0)
    assert result is None or 0.0 <= result <= RETRY_AFTER_CAP_S


@given(st.integers(0, 86_400))
def test_parse_retry_after_roundtrips_integers(seconds: int) -> None:
    assert parse_retry_after(str(seconds), now=0.0) == min(float(seconds), RETRY_AFTER_CAP_S)


def test_classifier_status_mapping() -> None:
    assert error_for_status(202, "") is None
    assert error_for_status(302, "") is None
    limited = error_for_status(429, "slow down", retry_after="7")
    assert isinstance(limited, RateLimitedError) and limited.retriable and limited.retry_after == 7.0
    no_header = error_for_status(429, "")
    assert isinstance(no_header, RateLimitedError) and no_header.retry_after is None
    for status in (500, 502, 503, 504):
        err = error_for_status(status, "oops")
        assert isinstance(err, ServerError) and err.retriable and err.status == status
    for status in (401, 403):
        err = error_for_status(status, "no")
        assert isinstance(err, AuthError) and not err.retriable
    for status in (400, 404, 409, 413, 422):
        err = error_for_status(status, '{"error":"bad item"}')
        assert isinstance(err, ClientError) and not err.retriable
        assert err.status == status and "bad item" in err.body


def test_fatal_error_body_is_truncated() -> None:
    err = error_for_status(400, "x" * 10_000)
    assert err is not None
    assert len(err.body) < 2100 and err.body.endswith("[truncated]")
    assert len(str(err)) < 400


def test_exceptions_map_to_retriable_transport_errors() -> None:
    assert isinstance(error_for_exception(TimeoutError()), TransportError)
    assert error_for_exception(ConnectionResetError("reset")).retriable
    same = ClientError(400, "x")
    assert error_for_exception(same) is same
    with pytest.raises(KeyError):
        error_for_exception(KeyError("bug"))


def test_retry_delay_prefers_retry_after_and_advances_backoff() -> None:
    delays = backoff(1, 60, jitter=no_jitter)
    assert retry_delay(RateLimitedError(429, "", retry_after=12.0), delays) == 12.0
    # the header-less retry that follows continues the exponential sequence
    assert retry_delay(RateLimitedError(429, ""), delays) == 2.0
    assert retry_delay(ServerError(503, ""), delays) == 4.0
