"""What ``/healthz`` and ``/readyz`` report: pure state the app's ticker refreshes.

Liveness (``/healthz``) fails when the process is stuck and a restart would help:

- the consumer thread has not polled within ``server.consumer_stall_s``;
- records have been pending longer than ``health.max_unsettled_age_s`` while nothing
  settled (a stall somewhere between decode and commit);
- a supervised task is dead.

Readiness (``/readyz``) fails while the instance must not take traffic: shutting down, no
partition assignment yet, no CXone token yet, or the send gate is closed (the DNC table is not
current, a DNC list is older than its limit), or the Schema Registry or the brokers cannot
be reached. The reason lists every condition not met.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Health:
    """The health state. The stages (through the app's ticker) set the fields.

    Attributes:
        consumer_last_poll: monotonic time of the consumer thread's latest poll, ``None``
            before it starts.
        dnc_ready: the DNC table has caught up with the high watermarks taken at start-up.
        partitions_assigned: the consumer received its first assignment from the group
            (possibly empty: an instance beyond the partition count is a warm standby).
        token_ok: a CXone access token was obtained.
        draining: shutdown has begun; the instance stops being ready.
        gate: the send gate's ``(open, reason)``.
        unavailable: other dependencies that cannot be reached now (named, for ``/readyz``).
        stalled_s: how long records have been pending while nothing settled.
        dead_task: the name of a supervised task that died, if any.
    """

    consumer_last_poll: float | None = None
    dnc_ready: bool = False
    partitions_assigned: bool = False
    token_ok: bool = False
    draining: bool = False
    gate: tuple[bool, str] = (True, "open")
    unavailable: tuple[str, ...] = ()
    stalled_s: float = 0.0
    dead_task: str | None = None

    def mark_poll(self, now: float) -> None:
        """Record a consumer poll at monotonic time ``now`` (a plain store: thread-safe)."""
        self.consumer_last_poll = now

    def live(self, now: float, stall_s: float, max_unsettled_age_s: float = float("inf")) -> tuple[bool, str]:
        """Whether the process is alive.

        Before the consumer thread starts there is nothing to be stuck, so the process is
        live (an unavailable DNC table is bounded by ``dnc.max_unavailable_s``).

        Returns:
            ``(alive, reason)``.
        """
        if self.dead_task is not None:
            return False, f"task {self.dead_task} is dead"
        if self.stalled_s > max_unsettled_age_s:
            return False, (f"records pending for {self.stalled_s:.0f}s while nothing settled "
                           f"(limit {max_unsettled_age_s:g}s)")
        if self.consumer_last_poll is None:
            return True, "consumer not started yet"
        idle = now - self.consumer_last_poll
        if idle > stall_s:
            return False, f"consumer thread has not polled for {idle:.1f}s (limit {stall_s:g}s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Whether the instance may take traffic: every start-up condition holds.

        Returns:
            ``(ready, reason)``; the reason lists every condition not met yet.
        """
        missing = []
        if self.draining:
            missing.append("shutting down")
        if not self.dnc_ready:
            missing.append("DNC table still bootstrapping")
        elif not self.gate[0]:
            missing.append(f"sending held: {self.gate[1]}")
        missing.extend(f"{name} unavailable" for name in self.unavailable)
        if not self.partitions_assigned:
            missing.append("no partition assignment yet")
        if not self.token_ok:
            missing.append("no CXone token yet")
        return (not missing), ("; ".join(missing) or "ok")
