"""Errors of the CXone simulator.

    ConnectorError
    └── SimulatorError            the simulator itself failed (bad config, cannot bind)
        └── ApiError              a request the simulated API refuses; becomes a JSON answer

Handlers raise :class:`ApiError`; one place (``httputil.error_middleware``) turns it into
``{"error": code, "message": ..., ...}`` with its HTTP status, so a malformed request
never becomes a 500.
"""

from __future__ import annotations

from typing import Any

from connector.errors import ConnectorError


class SimulatorError(ConnectorError):
    """The simulator could not do what it was asked (configuration, start-up)."""


class ApiError(SimulatorError):
    """A refusal of the simulated API, answered as JSON.

    Attributes:
        status: HTTP status to answer with (400, 401, 403, 404, 409, 413, 422, ...).
        code: short machine-readable error code, e.g. ``invalid_item``.
        extra: further JSON fields (``index``, ``field``, ``reason``, ``details``).
    """

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message, retriable=status in (408, 429) or status >= 500)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body answered for this error."""
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        out.update(self.extra)
        return out


def bad_request(code: str, message: str, **extra: Any) -> ApiError:
    """A 400 answer naming the problem."""
    return ApiError(400, code, message, **extra)
