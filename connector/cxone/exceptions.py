"""The CXone side's exceptions, under :class:`connector.errors.ConnectorError`.

    CXoneError
    ├── TransportError      I/O error or timeout talking to CXone (retriable)
    ├── HTTPStatusError     CXone answered with an error status; carries status and a truncated body
    │   ├── RateLimitedError    429, with the server's Retry-After when it gave one (retriable)
    │   ├── ServerError         5xx (retriable)
    │   ├── AuthError           401/403 after one token refresh (fatal)
    │   └── ClientError         any other 4xx: the request itself is wrong (fatal)
    ├── ProtocolError       a response that does not match the API (fatal)
    ├── DncRecordsError     DNC-group records that failed inside a 200 (retriable when one of them is)
    └── RetriesExhaustedError  a retriable failure that outlived ``max_request_attempts`` (fatal)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.errors import ConnectorError

if TYPE_CHECKING:
    from connector.cxone.records import DncRecordsResult

#: Response bodies kept on an error are cut to this many characters.
BODY_LIMIT = 2000


def truncate(text: str, limit: int = BODY_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[:limit] + "...[truncated]"


class CXoneError(ConnectorError):
    """Root of every error raised while talking to CXone."""


class TransportError(CXoneError):
    """A connection error or timeout: the request may not have reached CXone."""

    retriable = True


class HTTPStatusError(CXoneError):
    """CXone answered with a non-success status.

    Attributes:
        status: the HTTP status code.
        body: the response body, truncated to :data:`BODY_LIMIT` characters.
        retry_after: seconds the server asked us to wait, when it said so.
    """

    def __init__(
        self, status: int, body: str, *, retry_after: float | None = None, retriable: bool | None = None
    ) -> None:
        self.status = status
        self.body = truncate(body)
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}: {truncate(body, 300)}", retriable=retriable)


class RateLimitedError(HTTPStatusError):
    """429 Too Many Requests."""

    retriable = True


class ServerError(HTTPStatusError):
    """A 5xx answer."""

    retriable = True


class AuthError(HTTPStatusError):
    """Credentials refused, even after fetching a fresh token."""


class ClientError(HTTPStatusError):
    """Any other 4xx: retrying the same request cannot succeed."""


class ProtocolError(CXoneError):
    """A response whose shape does not match the API (missing field, not JSON, ...)."""


class DncRecordsError(CXoneError):
    """Some records of a DNC-group add or expire failed, though CXone answered 200.

    The message counts them and names no number.

    Attributes:
        result: the per-number outcome (``result.failed``, ``result.succeeded``).
    """

    def __init__(self, result: DncRecordsResult) -> None:
        self.result = result
        failed = result.failed
        super().__init__(
            f"DNC group {result.operation}: {len(failed)} of {len(result.records)} record(s) failed",
            retriable=any(r.retriable for r in failed),
        )


class RetriesExhaustedError(CXoneError):
    """A retriable failure that kept failing for every allowed attempt.

    Attributes:
        attempts: how many attempts were made.
        last: the last error seen.
    """

    def __init__(self, attempts: int, last: CXoneError) -> None:
        self.attempts = attempts
        self.last = last
        super().__init__(f"gave up after {attempts} attempts: {type(last).__name__}: {last}")
