"""The snapshot side of a :class:`connector.kafka.dnc_follower.TopicFollower`: restore at
start when the snapshot can be trusted, write one when due.

The format and the rules of trust are pure (:mod:`connector.core.dnc_snapshot`); the file I/O
and the topic's admin facts are in :mod:`connector.kafka.dnc_state`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.core.dnc_snapshot import SnapshotError, SnapshotMeta, SnapshotReader, encode_snapshot, untrusted_reason
from connector.kafka.dnc_state import SnapshotStore, topic_facts

if TYPE_CHECKING:
    from connector.kafka.dnc_follower import TopicFollower

log = logging.getLogger(__name__)

#: Subtracted from ``delete.retention.ms`` when judging a snapshot's age: clock skew and
#: transactions still open when a partition was seen at its end (at most
#: ``transaction.max.timeout.ms``, 15 minutes by default).
RETENTION_MARGIN_MS = 15 * 60 * 1000


class SnapshotKeeper:
    """Restores and writes one follower's snapshots (on the follower's thread).

    Args:
        follower: whose table, core and hooks (``read_snapshot_body``, ``adopt``, ``rebuilt``,
            ``snapshot_body``, ``snapshot_lists``, ``snapshot_written``).
        store: the snapshot file.
        config: the consumer settings (the admin client's connection is taken from them).
        timeout_s: deadline of one admin request.
    """

    def __init__(self, follower: TopicFollower[Any], store: SnapshotStore, config: Mapping[str, Any],
                 timeout_s: float) -> None:
        self._follower = follower
        self.store = store
        self._config = config
        self._timeout_s = timeout_s
        self._topic_id: str | None = None

    def restore(self, marks: Mapping[int, tuple[int, int]]) -> dict[int, int] | None:
        """Adopt the snapshot's table and return its offsets, or None (the reason counted and
        logged): the topic is then read from the beginning."""
        f = self._follower
        self.store.remove_leftovers()
        facts = topic_facts(self._config, f.topic, marks, self._timeout_s)
        self._topic_id = facts.topic_id
        reason, started = "none", time.monotonic()
        try:
            source = self.store.open()
        except OSError as exc:
            source, reason = None, "unreadable"
            log.warning("cannot open the %s snapshot: %s", f.kind, exc)
        if source is not None:
            with source:
                try:
                    reader = SnapshotReader(source.read)
                    meta = reader.header()
                    why = untrusted_reason(meta, f.kind, facts, int(f.wall_clock() * 1000), RETENTION_MARGIN_MS)
                    if why is None:
                        table = f.read_snapshot_body(reader)
                        reader.finish()
                        f.adopt(table, time.monotonic() - started)
                        log.info("%s snapshot restored in %.2fs: %s", f.kind, time.monotonic() - started,
                                 dict(sorted(meta.offsets.items())))
                        return dict(meta.offsets)
                    reason = why
                except SnapshotError as exc:
                    reason = exc.reason
                except OSError as exc:
                    reason = "unreadable"
                    log.warning("cannot read the %s snapshot: %s", f.kind, exc)
        log.warning("%s table read from the beginning of %s: snapshot %s", f.kind, f.topic,
                    "absent" if reason == "none" else f"not trusted ({reason})")
        f.rebuilt(reason)
        return None

    def write(self) -> bool:
        """Write a snapshot now, if the table's state allows one (every partition's age known).

        Returns:
            True when a write was attempted (a failure is counted and logged, never raised).
        """
        f = self._follower
        covered = f.core.covered_at_ms()
        if covered is None:
            return False
        if self._topic_id is None:  # unknown at start-up: try again (without it, it is never trusted)
            self._topic_id = topic_facts(self._config, f.topic, {}, self._timeout_s).topic_id
        positions = f.core.positions()
        meta = SnapshotMeta(kind=f.kind, topic=f.topic, topic_id=self._topic_id, partitions=len(positions),
                            offsets=positions, written_at_ms=int(f.wall_clock() * 1000), covered_at_ms=covered,
                            lists=f.snapshot_lists())
        started = time.monotonic()
        try:
            size: int | None = self.store.write(encode_snapshot(meta, f.snapshot_body()))
        except OSError as exc:
            size = None
            log.error("writing the %s snapshot failed: %s", f.kind, exc)
        f.snapshot_written(size, time.monotonic() - started)
        return True
