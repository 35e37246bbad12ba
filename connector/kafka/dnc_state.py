"""The I/O half of snapshots: one file per table in ``dnc.state_dir``, written atomically,
and what the broker says about the topic (its id, its ``delete.retention.ms``).

The format and the rules of trust are pure (:mod:`connector.core.dnc_snapshot`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource

from connector.core.dnc_snapshot import TopicFacts
from connector.kafka.client_config import with_logger

log = logging.getLogger(__name__)

#: A temporary file older than this is a leftover of a writer that died, and is removed.
_STALE_TMP_S = 600.0
#: librdkafka settings of a consumer that an admin client does not take.
_CONSUMER_ONLY = frozenset({
    "enable.auto.commit", "enable.auto.offset.store", "enable.partition.eof", "isolation.level",
    "partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
    "check.crcs", "consume.callback.max.messages", "statistics.interval.ms", "allow.auto.create.topics",
    "stats_cb", "error_cb", "on_commit", "throttle_cb", "offset.store.method", "coordinator.query.interval.ms",
})
_CONSUMER_PREFIXES = ("group.", "fetch.", "queued.", "auto.")


class SnapshotStore:
    """One snapshot file, ``<directory>/<name>``, replaced atomically.

    A write goes to a temporary file in the same directory, is flushed and fsynced, then
    renamed over the old file, and the directory is fsynced: a crash at any point leaves
    either the old snapshot or the new one, never a mix.

    Args:
        directory: the state directory (created when missing).
        name: the file name.
        before_rename: called with the temporary file's path just before the rename (tests
            inject a crash there).
    """

    def __init__(self, directory: str | os.PathLike[str], name: str, *,
                 before_rename: Callable[[Path], None] | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / name
        self._before_rename = before_rename

    def write(self, chunks: Iterable[bytes]) -> int:
        """Write a new snapshot from ``chunks``.

        Returns:
            Its size in bytes.

        Raises:
            OSError: the directory or the file could not be written (the old snapshot is
                left as it was).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        size = 0
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if self._before_rename is not None:
                self._before_rename(tmp)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return size

    def open(self) -> IO[bytes] | None:
        """The current snapshot for reading, or None when there is none.

        Raises:
            OSError: it exists but cannot be opened.
        """
        try:
            return open(self.path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            return None

    def remove_leftovers(self, now: float | None = None) -> int:
        """Delete temporary files of this snapshot left by writers that died.

        Returns:
            How many were removed.
        """
        now = time.time() if now is None else now
        removed = 0
        try:
            candidates = list(self.directory.glob(f".{self.path.name}.*.tmp"))
        except OSError:
            return 0
        for tmp in candidates:
            try:
                if now - tmp.stat().st_mtime > _STALE_TMP_S:
                    tmp.unlink()
                    removed += 1
            except OSError:
                continue
        return removed


def admin_config(consumer_config: Mapping[str, Any]) -> dict[str, Any]:
    """The connection settings of ``consumer_config`` (brokers, TLS, SASL, ...) for an admin
    client: consumer-only settings and callbacks left out."""
    return {k: v for k, v in consumer_config.items()
            if k not in _CONSUMER_ONLY and not k.startswith(_CONSUMER_PREFIXES)}


def topic_facts(config: Mapping[str, Any], topic: str, marks: Mapping[int, tuple[int, int]],
                timeout_s: float) -> TopicFacts:
    """The topic's id and ``delete.retention.ms`` from the admin API, with ``marks``.

    Never raises for the broker: a part that cannot be read is None (and a snapshot is then
    not trusted).
    """
    client = AdminClient(with_logger(admin_config(config)))
    topic_id: str | None = None
    retention: int | None = None
    try:
        description = client.describe_topics(TopicCollection([topic]), request_timeout=timeout_s)[topic]
        topic_id = str(description.result(timeout=timeout_s).topic_id)
    except (KafkaException, TimeoutError, ValueError) as exc:
        log.warning("cannot read the id of DNC topic %s: %s", topic, exc)
    try:
        resource = ConfigResource("topic", topic)
        entries = client.describe_configs([resource], request_timeout=timeout_s)[resource].result(timeout=timeout_s)
        retention = int(entries["delete.retention.ms"].value)
    except (KafkaException, TimeoutError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read delete.retention.ms of DNC topic %s: %s", topic, exc)
    return TopicFacts(topic, topic_id, dict(marks), retention)
