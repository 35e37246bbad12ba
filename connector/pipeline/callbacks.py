"""Webhook callbacks when a batch settles: signed, idempotent, retried, in the background.

Each configured URL gets the JSON summary in a POST with ``Idempotency-Key`` and
``X-Signature-SHA256: sha256=<hex>`` (HMAC-SHA256 of the raw body with
``callbacks.secret``). 429, 5xx, I/O errors and timeouts are retried with backoff up to
``callbacks.max_attempts``; other 4xx end the delivery at once. Every outcome becomes a
``CallbackResult`` record handed to the injected ``publish``. Deliveries run as background
tasks, so a webhook outage never blocks settlement.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import aiohttp

from connector.config import CallbackSettings
from connector.cxone.backoff import Jitter, backoff, full_jitter, retry_delay
from connector.cxone.exceptions import CXoneError
from connector.cxone.http import Http
from connector.ops.logs import scrub
from connector.ops.metrics import Metrics
from connector.ops.supervisor import Supervisor

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], Awaitable[None]]
SIGNATURE_HEADER = "X-Signature-SHA256"
DELIVERED, FAILED = "DELIVERED", "FAILED"


def sign(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time comparison)."""
    return hmac.compare_digest(sign(body, secret), header)


def delivery_id_for(idempotency_key: str, url: str) -> str:
    """A stable id for delivering one summary to one URL."""
    return hashlib.sha256(f"{idempotency_key}|{url}".encode()).hexdigest()[:32]


def encode_summary(summary: Mapping[str, Any]) -> bytes:
    """The exact body that is signed and sent (compact, key-sorted JSON)."""
    return json.dumps(summary, separators=(",", ":"), sort_keys=True).encode("utf-8")


def callback_result(
    *, delivery_id: str, batch_id: str, job_ids: Sequence[str], outcome: str, url: str,
    http_status: int | None, attempts: int, latency_ms: int, time_ms: int, error: str | None,
) -> dict[str, Any]:
    """A ``CallbackResult`` record dict (only the URL's host, never its path or query)."""
    return {
        "delivery_id": delivery_id,
        "batch_id": batch_id,
        "job_ids": list(job_ids),
        "outcome": outcome,
        "url_host": urllib.parse.urlsplit(url).hostname or "",
        "http_status": http_status,
        "attempts": attempts,
        "latency_ms": latency_ms,
        "time": time_ms,
        "error": error,
    }


class CallbackSender:
    """Sends summaries to every configured URL in background tasks.

    Args:
        settings: URLs, secret, attempts, timeout and backoff.
        publish: awaits the broker's ack for one ``CallbackResult`` record.
        session: a session to share, or None to own one (timeout ``callbacks.timeout_s``).
        jitter: backoff jitter; ``sleep``: the sleep between retries.
        metrics: deliveries by outcome, attempts and latency (a private registry when ``None``).
    """

    def __init__(
        self,
        settings: CallbackSettings,
        publish: Publish,
        *,
        session: aiohttp.ClientSession | None = None,
        jitter: Jitter = full_jitter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Metrics | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics if metrics is not None else Metrics()
        self._publish = publish
        self._session = session
        self._own_session = session is None
        self._jitter = jitter
        self._sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisor = supervisor

    def _http(self) -> Http:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return Http(self._session)

    def _delays(self) -> Iterator[float]:
        return backoff(self._settings.backoff_initial_s, self._settings.backoff_max_s, jitter=self._jitter)

    def notify(self, summary: Mapping[str, Any], *, batch_id: str, job_ids: Sequence[str],
               idempotency_key: str) -> None:
        """Schedule one delivery per configured URL; returns at once."""
        if not self._settings.urls:
            return
        body = encode_summary(summary)
        for url in self._settings.urls:
            coro = self._deliver(url, body, batch_id, list(job_ids), idempotency_key)
            task = (self._supervisor.watch("callback", coro) if self._supervisor is not None
                    else asyncio.get_running_loop().create_task(coro, name="callback"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Deliveries still running."""
        return len(self._tasks)

    async def _deliver(self, url: str, body: bytes, batch_id: str, job_ids: list[str], key: str) -> None:
        secret = self._settings.secret.get() if self._settings.secret is not None else ""
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   SIGNATURE_HEADER: sign(body, secret)}
        http = self._http()
        delays = self._delays()
        started = time.monotonic()
        attempts, status, error = 0, None, None
        outcome, label = FAILED, "failed"
        max_attempts = max(1, self._settings.max_attempts)
        while attempts < max_attempts:
            attempts += 1
            self._metrics.callback_attempts.inc()
            try:
                resp = http.check(await http.send("POST", url, headers=headers, data=body))
            except CXoneError as err:
                status = getattr(err, "status", None)
                error = scrub(f"{type(err).__name__}: {err}")[:500]
                if not err.retriable:
                    label = "rejected"  # the receiver refused it: retrying cannot help
                    break
                if attempts >= max_attempts:
                    break
                await self._sleep(retry_delay(err, delays))
            else:
                outcome, label, status, error = DELIVERED, "delivered", resp.status, None
                break
        self._metrics.callback_deliveries.labels(outcome=label).inc()
        self._metrics.callback_duration.observe(time.monotonic() - started)
        host = urllib.parse.urlsplit(url).hostname
        if outcome == FAILED:
            log.warning("callback to %s failed after %d attempt(s): %s", host, attempts, error)
        record = callback_result(
            delivery_id=delivery_id_for(key, url), batch_id=batch_id, job_ids=job_ids, outcome=outcome,
            url=url, http_status=status, attempts=attempts,
            latency_ms=int((time.monotonic() - started) * 1000), time_ms=int(time.time() * 1000), error=error,
        )
        await self._publish_record(record)

    async def _publish_record(self, record: dict[str, Any]) -> None:
        """Publish until the broker acks; a retriable failure is retried, any other raises
        (the supervisor then stops the app: a result is never dropped unseen).

        Raises:
            Exception: what the producer raised for a failure retrying cannot mend.
        """
        delays = self._delays()
        while True:
            try:
                await self._publish(record)
                return
            except Exception as exc:
                if not getattr(exc, "retriable", False):
                    raise
                log.warning("publishing callback result %s failed (%s); retrying", record["delivery_id"], exc)
                await self._sleep(next(delays))

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for running deliveries; True when none is left."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        return not self._tasks

    async def close(self) -> None:
        """Cancel running deliveries and close the owned session."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_session and self._session is not None:
            await self._session.close()
