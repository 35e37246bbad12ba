"""Backoff delays and the retriable-or-fatal classifier. Pure: no I/O, no clock of its own.

``backoff()`` yields capped exponential delays with jitter; ``error_for_status()`` turns an
HTTP answer into the matching :mod:`connector.cxone.exceptions` error (or ``None`` on
success); ``error_for_exception()`` does the same for I/O errors and timeouts;
``retry_delay()`` says how long to wait before the next attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime

from connector.cxone.exceptions import (
    AuthError,
    ClientError,
    CXoneError,
    HTTPStatusError,
    RateLimitedError,
    ServerError,
    TransportError,
)

Jitter = Callable[[float], float]

#: A Retry-After longer than this is clamped: a misbehaving server must not park us for hours.
RETRY_AFTER_CAP_S = 600.0


def full_jitter(delay: float) -> float:
    """A uniformly random delay in ``[0, delay]`` (AWS "full jitter")."""
    return random.uniform(0.0, delay)  # noqa: S311 - jitter, not cryptography


def equal_jitter(delay: float) -> float:
    """Half the delay plus a random half: never shorter than ``delay / 2``."""
    return delay / 2 + random.uniform(0.0, delay / 2)  # noqa: S311 - jitter, not cryptography


def no_jitter(delay: float) -> float:
    """The delay unchanged (deterministic tests)."""
    return delay


def backoff(
    initial: float, maximum: float, factor: float = 2.0, jitter: Jitter = full_jitter
) -> Iterator[float]:
    """Yield delays ``initial, initial*factor, ...`` capped at ``maximum``, each passed through ``jitter``.

    The iterator never ends; the caller bounds the number of attempts.

    Raises:
        ValueError: ``initial`` or ``maximum`` is negative, or ``factor`` is below 1.
    """
    if initial < 0 or maximum < 0 or factor < 1:
        raise ValueError("backoff needs initial >= 0, maximum >= 0 and factor >= 1")
    delay = min(initial, maximum)
    while True:
        yield max(0.0, min(jitter(delay), maximum))
        delay = min(delay * factor, maximum)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    Args:
        value: the header value, or None when absent.
        now: the current epoch time in seconds, for the HTTP-date form.

    Returns:
        The delay in seconds (0 for a date in the past, clamped to :data:`RETRY_AFTER_CAP_S`),
        or None when the header is missing or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def error_for_status(
    status: int, body: str, *, retry_after: str | None = None, now: float = 0.0
) -> HTTPStatusError | None:
    """The error a response status stands for, or None for a 1xx-3xx success.

    429 and 5xx are retriable; 401/403 are :class:`AuthError`; every other 4xx is a fatal
    :class:`ClientError`. The body is kept (truncated) for the dead-letter record.
    """
    if status < 400:
        return None
    if status == 429:
        return RateLimitedError(status, body, retry_after=parse_retry_after(retry_after, now=now))
    if status >= 500:
        return ServerError(status, body, retry_after=parse_retry_after(retry_after, now=now))
    if status in (401, 403):
        return AuthError(status, body)
    return ClientError(status, body)


def error_for_exception(exc: BaseException) -> CXoneError:
    """Map an exception from the transport into the CXone tree.

    ``CXoneError`` passes through; ``OSError`` and ``TimeoutError`` become a retriable
    :class:`TransportError`. The I/O adapter maps its library's own errors before calling this.

    Raises:
        BaseException: ``exc`` itself when it is none of those (a bug, or cancellation).
    """
    if isinstance(exc, CXoneError):
        return exc
    if isinstance(exc, TimeoutError):
        return TransportError(f"timed out: {exc}" if str(exc) else "timed out")
    if isinstance(exc, OSError):
        return TransportError(f"{type(exc).__name__}: {exc}")
    raise exc


def retry_delay(err: CXoneError, delays: Iterator[float]) -> float:
    """How long to wait before retrying after ``err``.

    A server-given ``Retry-After`` wins; without it the next value of ``delays`` is used
    (which advances it, so consecutive failures back off further).
    """
    after = getattr(err, "retry_after", None)
    if isinstance(after, float | int):
        next(delays)  # keep the exponential sequence moving for the next missing header
        return float(after)
    return next(delays)
