"""The consumer group's rebalance callbacks, run on the consumer thread inside ``consume()``.

With ``cooperative-sticky`` they are incremental: ``on_assign`` receives only the partitions
added and ``on_revoke`` only those taken away, and :class:`Rebalancer` calls
``incremental_assign`` / ``incremental_unassign`` itself (plain ``assign`` / ``unassign``
under an eager strategy).

On revoke the thread blocks, up to ``revoke_timeout_s``, on a coroutine it runs on the loop:
it drops the revoked partitions' records still queued for the loop, then asks the
:class:`RebalanceListener` to drop its buffered records and tracker state and to return what
is committable for them; the thread commits that synchronously and only then lets the
revoke complete. Lost partitions (``on_lost``) are dropped the same way but never committed:
another member may own them already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connector.core.models import TP
from connector.core.pausing import PausingManager
from connector.kafka.commands import wait_on_loop
from connector.kafka.exceptions import KafkaError
from connector.kafka.handoff import HandOff
from connector.kafka.loop_thread import call_loop

log = logging.getLogger(__name__)


class RebalanceListener(Protocol):
    """What the loop side does on rebalances. Every method runs on the event loop."""

    def on_assigned(self, tps: list[TP]) -> None:
        """Partitions were added to this member's assignment."""

    async def on_revoked(self, tps: list[TP]) -> Mapping[TP, int]:
        """Partitions are being taken away: drop their state.

        Returns:
            The offsets to commit for (some of) ``tps`` before the revoke completes.
        """
        ...

    def on_lost(self, tps: list[TP]) -> None:
        """Partitions were lost (already reassigned): drop their state, commit nothing."""


def is_cooperative(config: Mapping[str, str]) -> bool:
    """True when the configured assignment protocol is incremental (cooperative)."""
    strategy = config.get("partition.assignment.strategy", "")
    return "cooperative" in strategy or config.get("group.protocol", "classic") == "consumer"


Commit = Callable[[Consumer, Mapping[TP, int]], object]
ApplyPauses = Callable[[Consumer], None]


class Rebalancer:
    """The member's assignment and the three rebalance callbacks.

    Args:
        cooperative: whether the assignment protocol is incremental.
        handoff: the queue to the loop, whose revoked records are dropped.
        pausing: told of every assignment change.
        listener: the loop side's hooks; ``None`` keeps no state.
        commit: commits offsets synchronously on the consumer thread.
        apply_pauses: applies the pausing manager's changes to the consumer.
        revoke_timeout_s: how long a revoke waits for the loop.
    """

    def __init__(self, *, cooperative: bool, handoff: HandOff, pausing: PausingManager,
                 listener: RebalanceListener | None, commit: Commit, apply_pauses: ApplyPauses,
                 revoke_timeout_s: float) -> None:
        self.cooperative = cooperative
        self.assignment: frozenset[TP] = frozenset()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._handoff = handoff
        self._pausing = pausing
        self._listener = listener
        self._commit = commit
        self._apply_pauses = apply_pauses
        self._revoke_timeout_s = revoke_timeout_s

    # loop side

    async def _revoke_on_loop(self, tps: list[TP]) -> dict[TP, int]:
        self._handoff.drop(tps)
        if self._listener is None:
            return {}
        return dict(await self._listener.on_revoked(tps))

    async def _lost_on_loop(self, tps: list[TP]) -> None:
        self._handoff.drop(tps)
        if self._listener is not None:
            self._listener.on_lost(tps)

    def _assigned_on_loop(self, tps: list[TP]) -> None:
        if self._listener is not None:
            self._listener.on_assigned(tps)

    # consumer thread side, inside consume() or close()

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """librdkafka's ``on_assign``."""
        tps = [(p.topic, p.partition) for p in partitions]
        if self.cooperative:
            if not partitions:  # a cooperative round that added nothing here
                return
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self.assignment = (self.assignment | frozenset(tps)) if self.cooperative else frozenset(tps)
        self._pausing.assign(self.assignment)
        log.info("assigned %d partition(s): %s", len(tps), _fmt(tps))
        self._apply_pauses(consumer)
        # Queued before any record of these partitions, so the loop learns of them first.
        call_loop(self.loop, self._assigned_on_loop, tps)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """librdkafka's ``on_revoke``: commit what the loop settled, then unassign."""
        tps = [(p.topic, p.partition) for p in partitions]
        if self.cooperative and not partitions:
            return
        log.info("revoking %d partition(s): %s", len(tps), _fmt(tps))
        offsets = wait_on_loop(self.loop, self._revoke_on_loop(tps), "revoke", self._revoke_timeout_s) or {}
        revoked = set(tps)
        to_commit = {tp: off for tp, off in offsets.items() if tp in revoked}
        if to_commit:
            try:
                self._commit(consumer, to_commit)
            except KafkaError as exc:
                log.warning("commit on revoke failed (records will be read again): %s", exc)
        self._unassign(consumer, partitions, revoked)

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """librdkafka's ``on_lost``: drop the partitions' state, commit nothing."""
        tps = [(p.topic, p.partition) for p in partitions]
        log.warning("lost %d partition(s): %s", len(tps), _fmt(tps))
        wait_on_loop(self.loop, self._lost_on_loop(tps), "lost", self._revoke_timeout_s)
        self._unassign(consumer, partitions, set(tps))

    def _unassign(self, consumer: Consumer, partitions: list[TopicPartition], tps: set[TP]) -> None:
        try:
            if self.cooperative:
                consumer.incremental_unassign(partitions)
            else:
                consumer.unassign()
        except KafkaException as exc:
            log.warning("unassign failed: %s", exc)
        self.assignment = self.assignment - tps if self.cooperative else frozenset()
        self._pausing.assign(self.assignment)


def _fmt(tps: Iterable[TP]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps))
