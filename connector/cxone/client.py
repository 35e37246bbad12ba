"""What delivery needs from a CXone profile, and the factory that builds the right one.

Both profiles share one aiohttp session (explicit timeouts), one token cache and the same
retry policy (``cxone.max_request_attempts``, backoff from ``cxone.backoff_*``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import aiohttp

from connector.config import CXoneSettings
from connector.core.models import Batch
from connector.cxone.auth import TokenCache
from connector.cxone.backoff import Jitter, backoff, full_jitter
from connector.cxone.http import PaceGate
from connector.cxone.pacing import Pacer
from connector.cxone.protocol import JobUpdate
from connector.errors import ConnectorError

if TYPE_CHECKING:
    from connector.ops.metrics import Metrics

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    """One job created for (part of) a batch."""

    job_id: str
    item_count: int


#: ``check(batch) -> the batch to send now, or None when none of it may be sent``: the
#: send-time DNC check, asked before every HTTP attempt of a submission (retries after 429,
#: 5xx and I/O errors included). It may wait (the DNC table is not current) and it audits
#: what it removes.
SendCheck = Callable[[Batch], Awaitable[Batch | None]]


class NothingToSend(ConnectorError):
    """Every contact of a submission was removed by the send-time check (not a failure: the
    batch's records settle with their audit records)."""


class ProfileClient(Protocol):
    """A CXone API profile as delivery and the monitor see it."""

    profile: str
    list_id: str
    #: The profile's access-token cache (readiness asks it for a first token).
    tokens: TokenCache

    async def submit(self, batch: Batch, *, check: SendCheck | None = None) -> list[SubmittedJob]:
        """Create the job(s) for ``batch`` under its idempotency key.

        Args:
            check: asked before every HTTP attempt; what it removes is not sent, and a body it
                changes is sent under another idempotency key.

        Returns:
            The jobs created (none when ``check`` left nothing of any part to send).

        Raises:
            HTTPStatusError: a fatal answer (4xx other than 401/429), with status and body.
            RetriesExhaustedError: retriable failures for every allowed attempt.
            CXoneError: any other failure.
        """
        ...

    async def job_status(self, job_id: str) -> JobUpdate:
        """Poll one job.

        Raises:
            CXoneError: the poll failed.
        """
        ...

    def push_url(self) -> str | None:
        """The WebSocket URL for job events, or None when the profile has no push channel."""
        ...

    async def push_headers(self) -> Mapping[str, str]:
        """Headers for the WebSocket handshake (a fresh bearer token)."""
        ...

    def invalidate_token(self, header_value: str) -> None:
        """Drop the token in ``header_value`` (``Bearer ...``) after a 401 on the push channel."""
        ...

    async def close(self) -> None:
        """Close the session when this client created it."""
        ...


class Retrying:
    """Retry settings and the request pacing shared by a profile's calls (one per client).

    Args:
        clock: monotonic seconds for the pacer.
    """

    def __init__(
        self, settings: CXoneSettings, *, jitter: Jitter = full_jitter, sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_attempts = max(1, settings.max_request_attempts)
        self.initial = settings.backoff_initial_s
        self.maximum = settings.backoff_max_s
        self.jitter = jitter
        self.sleep = sleep
        # Never adapt below one request per longest backoff delay.
        floor = 1.0 / settings.backoff_max_s if settings.backoff_max_s > 0 else 1.0
        #: Every API request of the client passes this gate (not the token endpoint).
        self.gate = PaceGate(Pacer(settings.max_requests_per_second, min_rate=floor, clock=clock))

    def delays(self) -> Iterator[float]:
        """A fresh backoff sequence for one call."""
        return backoff(self.initial, self.maximum, jitter=self.jitter)


def make_client(
    settings: CXoneSettings,
    *,
    session: aiohttp.ClientSession | None = None,
    jitter: Jitter = full_jitter,
    sleep: Sleep = asyncio.sleep,
    metrics: Metrics | None = None,
) -> ProfileClient:
    """The client for ``settings.profile``.

    Args:
        session: a session to share; when None the client makes one (explicit timeouts) and
            closes it in ``close()``.
        jitter: backoff jitter (inject :func:`~connector.cxone.backoff.no_jitter` in tests).
        sleep: the sleep used between retries.
        metrics: where requests, retries and token fetches are counted (``None``: nowhere).

    Raises:
        ValueError: an unknown profile.
    """
    retrying = Retrying(settings, jitter=jitter, sleep=sleep)
    if settings.profile == "v2":
        from connector.cxone.v2 import V2Client

        return V2Client(settings, retrying, session=session, metrics=metrics)
    if settings.profile == "call-lists":
        from connector.cxone.calllists import CallListsClient

        return CallListsClient(settings, retrying, session=session, metrics=metrics)
    raise ValueError(f"unknown CXone profile {settings.profile!r}")
