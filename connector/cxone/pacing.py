"""Client-side pacing of CXone requests. Pure: no I/O, the clock is injected.

One :class:`Pacer` per CXone client. It combines three rules:

* a **token bucket** (GCRA form, ``burst`` tokens) at the configured ``rate`` requests per
  second (``cxone.max_requests_per_second``; 0 = no configured limit);
* a shared **closed-until** time: after a 429 every request of the client waits until the
  ``Retry-After`` (or the backoff delay) has passed, instead of each retrying on its own;
* **AIMD**: the first 429 of an episode halves the current rate (when no rate was configured
  the base is the send rate measured over the last ``window_s``); each success of a request
  sent after that adds ``1/recovery`` of the rate lost, up to the configured rate (no upper
  bound when none was configured). CXone publishes no limits, so this runs in both cases.

A 429 starts a new *episode* only when its request was sent after the previous episode began;
429s of requests already in flight then carry no new information and change nothing. The
request whose 429 opened the episode is the *probe*: it sleeps its own delay and goes first
when the gate opens (exempt from the adaptive spacing, not from the configured one); the slot
right after the opening is reserved for it, so the others follow one adaptive interval later.
A 429 of the probe itself closes the gate again (its next backoff delay) without another
decrease: the gate opened too early, the pace was not too fast.

The asyncio side (waiting, queueing) is :class:`connector.cxone.http.PaceGate`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

INF = math.inf


class Pacer:
    """Token bucket + shared closed-until time + AIMD for one client's requests.

    Args:
        rate: the configured limit in requests per second; 0 (or less) means none.
        burst: tokens the bucket holds (requests that may go back to back).
        min_rate: the adaptive rate never drops below this (requests per second).
        decrease: the factor applied to the rate on a new 429 episode (AIMD's "halve").
        recovery: successes needed to win back the rate lost at the last decrease.
        window_s: how far back the send rate is measured when no rate is configured.
        clock: monotonic seconds.

    Raises:
        ValueError: ``burst < 1``, ``min_rate <= 0``, ``decrease`` outside (0, 1),
            ``recovery < 1`` or ``window_s <= 0``.
    """

    def __init__(self, rate: float = 0.0, *, burst: float = 1.0, min_rate: float = 0.05,
                 decrease: float = 0.5, recovery: float = 20.0, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or min_rate <= 0 or not 0 < decrease < 1 or recovery < 1 or window_s <= 0:
            raise ValueError("pacer needs burst >= 1, min_rate > 0, 0 < decrease < 1, recovery >= 1, "
                             "window_s > 0")
        self.ceiling = rate if rate > 0 else INF
        #: The current adaptive rate (requests per second; ``inf``: unpaced).
        self.rate = self.ceiling
        self.burst = burst
        self.min_rate = min(min_rate, self.ceiling)
        self.decrease = decrease
        self.recovery = recovery
        self.window_s = window_s
        self.clock = clock
        #: No request may go before this time (the shared 429 gate).
        self.closed_until = -INF
        #: Bumped whenever a waiter's computed delay may have become stale.
        self.version = 0
        #: Rate decreases so far (one per 429 episode).
        self.episodes = 0
        self._tat_limit = -INF  # GCRA "theoretical arrival time" at the configured rate
        self._tat = -INF  # the same at the adaptive rate
        self._episode_at = -INF  # when the current 429 episode began
        self._probe_at = -INF  # when the last probe was sent
        self._step = 0.0  # additive increase per success
        self._sent: deque[float] = deque(maxlen=4096)

    @staticmethod
    def _interval(rate: float) -> float:
        return 0.0 if rate == INF else 1.0 / rate

    def _now(self, probe: float | None) -> float:
        now = self.clock()
        return now if probe is None else max(now, probe)

    def delay(self, *, probe: float | None = None) -> float:
        """Seconds until a request may be sent (0.0: now).

        Args:
            probe: for the request that opened the current 429 episode, the time it has
                already waited until; it is then exempt from the adaptive spacing.
        """
        now = self._now(probe)
        allowance = self.burst - 1
        start = max(self.closed_until, self._tat_limit - allowance * self._interval(self.ceiling))
        if probe is None:
            start = max(start, self._tat - allowance * self._interval(self.rate))
        return max(0.0, start - now)

    def take(self, *, probe: float | None = None) -> float:
        """Record a request sent now (call when :meth:`delay` is 0).

        Returns:
            The send time, to pass to :meth:`succeeded` or :meth:`throttled`.
        """
        now = self._now(probe)
        if self.ceiling != INF:
            self._tat_limit = max(self._tat_limit, now) + self._interval(self.ceiling)
        if probe is None:
            self._tat = max(self._tat, now) + self._interval(self.rate)
        else:  # its slot was reserved by throttled()
            self._tat = max(self._tat, now + self._interval(self.rate))
            self._probe_at = now
        self._sent.append(now)
        self.version += 1
        return now

    def measured_rate(self) -> float:
        """Requests sent per second over the last ``window_s`` (over at least one second)."""
        now = self.clock()
        while self._sent and self._sent[0] < now - self.window_s:
            self._sent.popleft()
        if not self._sent:
            return self.min_rate
        return len(self._sent) / max(1.0, now - self._sent[0])

    def succeeded(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` succeeded: additive increase (up to the configured rate)."""
        if sent_at < self._episode_at or self.rate >= self.ceiling:
            return
        self.rate = min(self.ceiling, self.rate + self._step)

    def throttled(self, sent_at: float, wait_s: float) -> float | None:
        """A request sent at ``sent_at`` was answered 429; the gate closes for ``wait_s``.

        Args:
            wait_s: the ``Retry-After`` in seconds, or the backoff delay when it was missing.

        Returns:
            For the request that opens a new episode, the time it must wait until itself
            (then pass it as ``probe`` to :meth:`delay` and :meth:`take`); None for a request
            that was in flight when the episode began (it queues with the others).
        """
        now = self.clock()
        if sent_at < self._episode_at:
            return None
        # A 429 of the probe says the gate opened too early, not that the pace is too fast.
        if sent_at != self._probe_at:
            base = self.rate if self.rate != INF else self.measured_rate()
            self.rate = max(self.min_rate, min(self.ceiling, base * self.decrease))
            self._step = max(0.0, base - self.rate) / self.recovery
            self.episodes += 1
        until = now + max(0.0, wait_s)
        self.closed_until = max(self.closed_until, until)
        # Reserve the opening slot for the probe: the others go one adaptive interval later.
        self._tat = max(self._tat, self.closed_until + self._interval(self.rate))
        self._episode_at = now
        self.version += 1
        return until
