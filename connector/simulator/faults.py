"""Fault decisions: token-bucket rate limit, latency, 5xx, dropped and hung connections,
job outcomes. Pure: the clock and the random generator are injected, so a seed gives the
same faults every run.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from connector.simulator.config import FaultSettings, LatencyFaults
from connector.simulator.state import JobStatus

Action = Literal["pass", "drop", "hang", "rate_limit", "error"]


@dataclass(frozen=True)
class Decision:
    """What to do with one request.

    Attributes:
        action: ``pass`` (answer normally), ``drop`` (close the connection unanswered),
            ``hang`` (never answer), ``rate_limit`` (429) or ``error`` (``status``).
        delay_s: latency to add before acting.
        status: the HTTP status for ``rate_limit`` and ``error``.
        retry_after_s: whole seconds for the ``Retry-After`` header, or None to omit it.
    """

    action: Action = "pass"
    delay_s: float = 0.0
    status: int = 0
    retry_after_s: int | None = None


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; each request takes one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> float:
        """Take a token. Returns 0.0 on success, else the seconds until one is available."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def draw_latency(cfg: LatencyFaults, rng: random.Random) -> float:
    """A latency in seconds drawn from the configured distribution."""
    if cfg.distribution == "fixed":
        return cfg.min_ms / 1000.0
    if cfg.distribution == "uniform":
        return rng.uniform(cfg.min_ms, cfg.max_ms) / 1000.0
    if cfg.distribution == "exponential":
        extra = rng.expovariate(1.0 / cfg.mean_ms) if cfg.mean_ms > 0 else 0.0
        return min(cfg.max_ms, cfg.min_ms + extra) / 1000.0
    return 0.0


class FaultInjector:
    """Decides, request by request, which fault (if any) to inject.

    Args:
        settings: the fault settings; replace them with :meth:`update`.
        clock: monotonic seconds, for the token bucket.
        rng: random generator; defaults to one seeded with ``settings.seed``.
    """

    def __init__(
        self, settings: FaultSettings, clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._fixed_rng = rng
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        """Start over: reseed, refill the bucket, count jobs from zero."""
        # Not cryptographic: a seeded generator makes fault runs repeatable.
        self.rng = self._fixed_rng or random.Random(self.settings.seed)  # noqa: S311
        self.jobs_created = 0
        self._bucket = self._new_bucket()
        self._dnc_failures: Counter[str] = Counter()

    def _new_bucket(self) -> TokenBucket | None:
        rl = self.settings.rate_limit
        return TokenBucket(rl.requests_per_second, rl.burst, self._clock) if rl.enabled else None

    def update(self, settings: FaultSettings) -> None:
        """Switch to new settings; the bucket restarts full when its settings changed."""
        old = self.settings
        self.settings = settings
        if settings.rate_limit != old.rate_limit:
            self._bucket = self._new_bucket()
        if settings.seed != old.seed and self._fixed_rng is None:
            self.rng = random.Random(settings.seed)  # noqa: S311 - repeatable, not secret
        if settings.dnc != old.dnc:
            self._dnc_failures.clear()

    def applies_to(self, path: str) -> bool:
        """Whether HTTP faults apply to ``path`` (never to ``/_sim/``)."""
        if path.startswith("/_sim/"):
            return False
        return not self.settings.paths or any(path.startswith(p) for p in self.settings.paths)

    def decide(self, path: str) -> Decision:
        """The fault for one request to ``path`` (``pass`` when none applies)."""
        if not self.applies_to(path):
            return Decision()
        s = self.settings
        delay = draw_latency(s.latency, self.rng)
        if s.connections.drop_rate and self.rng.random() < s.connections.drop_rate:
            return Decision("drop", delay)
        if s.connections.hang_rate and self.rng.random() < s.connections.hang_rate:
            return Decision("hang", delay)
        if self._bucket is not None:
            wait = self._bucket.take()
            if wait > 0:
                retry = max(1, math.ceil(wait)) if s.rate_limit.retry_after else None
                return Decision("rate_limit", delay, 429, retry)
        if s.errors.rate and self.rng.random() < s.errors.rate:
            return Decision("error", delay, self.rng.choice(s.errors.statuses))
        return Decision("pass", delay)

    def job_outcome(self) -> JobStatus:
        """The terminal status of the next job created."""
        self.jobs_created += 1
        jf = self.settings.jobs
        if self.jobs_created <= jf.fail_first:
            return "FAILED"
        if jf.failed_fraction or jf.aborted_fraction:
            draw = self.rng.random()
            if draw < jf.failed_fraction:
                return "FAILED"
            if draw < jf.failed_fraction + jf.aborted_fraction:
                return "ABORTED"
        return "COMPLETED"

    def dnc_record_fails(self, digits: str) -> bool:
        """Whether the DNC record of ``digits`` (a canonical number) fails this time."""
        chosen = {re.sub(r"[^0-9]", "", n) for n in self.settings.dnc.fail_numbers}
        if digits not in chosen:
            return False
        self._dnc_failures[digits] += 1
        times = self.settings.dnc.fail_times
        return times == 0 or self._dnc_failures[digits] <= times

    def rejected_rows(self, count: int) -> set[int]:
        """Indexes (of ``count`` uploaded rows) that CXone rejects: a seeded draw of
        ``faults.uploads.reject_fraction`` of them, rounded to whole rows."""
        share = self.settings.uploads.reject_fraction
        if share <= 0 or count <= 0:
            return set()
        return set(self.rng.sample(range(count), min(count, round(count * share))))

    def token_lifetime(self, default_s: float) -> float:
        """The lifetime of a token issued now."""
        return self.settings.token_lifetime_s or default_s
