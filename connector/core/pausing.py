"""Which partitions the consumer should pause: pure, in the manner of quix-streams'
``PausingManager``. The consumer thread asks it and applies what it says.

Two independent reasons pause a partition, and a partition is paused while either holds:

- the **loop's** pauses (backpressure: too many unsettled records, a full submit queue):
  every partition (``pause(None)``, including partitions assigned later) or chosen ones;
- the **hand-off flow pause**: the loop has fallen ``max_pending`` consumed lists behind.

Before the flow pause, the thread first *holds*: it stops consuming (librdkafka's own
prefetch queue, itself bounded, keeps what arrives) for up to ``hold_s`` while the loop
catches up. A pause drops the partitions' prefetched records and a resume fetches them again,
a stall every time a busy loop falls a few lists behind; holding avoids that. Only a loop
that stays behind longer gets the flow pause, which lasts until it has taken half of the
pending lists, while the thread keeps polling (rebalances and the poll interval are served).
"""

from __future__ import annotations

from collections.abc import Iterable

from connector.core.models import TP


class PausingManager:
    """The pause decisions of one consumer.

    Args:
        max_pending: consumed lists the loop may lag behind before the thread holds.
        hold_s: how long the thread holds before it pauses the partitions instead.
    """

    def __init__(self, max_pending: int, hold_s: float) -> None:
        self._max_pending = max(1, max_pending)
        self._hold_s = hold_s
        self._hold_since: float | None = None
        self._assignment: frozenset[TP] = frozenset()
        self._user: set[TP] = set()
        self._all = False
        self._flow = False
        self._applied: set[TP] = set()

    @property
    def paused_all(self) -> bool:
        """True while the loop asked for every partition to be paused."""
        return self._all

    @property
    def flow_paused(self) -> bool:
        """True during a hand-off flow pause."""
        return self._flow

    def pause(self, tps: Iterable[TP] | None) -> None:
        """The loop's pause of ``tps``, or with None of every partition (later ones too)."""
        if tps is None:
            self._all = True
        else:
            self._user |= set(tps)

    def resume(self, tps: Iterable[TP] | None) -> None:
        """Undo :meth:`pause`: None lifts the loop's pause of everything."""
        if tps is None:
            self._all = False
            self._user.clear()
        else:
            self._user -= set(tps)

    def assign(self, assignment: frozenset[TP]) -> None:
        """The member's assignment is now ``assignment``."""
        self._assignment = assignment
        self._applied &= assignment
        self._user &= assignment

    def hold(self, pending: int, now: float) -> bool:
        """Whether the thread should hold (not consume) now, ``pending`` lists behind."""
        if pending < self._max_pending or self._flow:
            self._hold_since = None
            return False
        if self._hold_since is None:
            self._hold_since = now
        return now - self._hold_since < self._hold_s  # past it: pause instead, and keep polling

    def flow(self, pending: int) -> None:
        """Start or end the flow pause for ``pending`` lists behind."""
        if not self._flow and pending >= self._max_pending:
            self._flow = True
        elif self._flow and pending <= self._max_pending // 2:
            self._flow = False

    def changes(self) -> tuple[list[TP], list[TP]]:
        """What to pause and to resume now (sorted) to match the decisions; marks them applied."""
        if self._all or self._flow:
            want = set(self._assignment)
        else:
            want = self._user & self._assignment
        to_pause = sorted(want - self._applied)
        to_resume = sorted((self._applied - want) & self._assignment)
        self._applied = want
        return to_pause, to_resume
