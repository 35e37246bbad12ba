"""DNC snapshots on the real broker: a restart reads only the tail, changes made while the
instance was down are applied, every snapshot that cannot be trusted leads to a full
rebuild, and a crash while writing leaves the previous snapshot usable."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from dnc_helpers import COMPACT, config, entry, produce, wait_for

from connector.core.dnc_snapshot import SnapshotMeta, dnc_body, encode_snapshot, read_dnc_snapshot
from connector.kafka.dnc_source import DncSource
from connector.ops.metrics import Metrics

pytestmark = pytest.mark.kafka

NUMBERS = [f"+1415555{i:04d}" for i in range(40)]


def snapshot_path(state_dir: Path, topic: str) -> Path:
    return state_dir / f"{topic}.dnc.snapshot"


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def run(bootstrap: str, topic: str, state_dir: Path, **kwargs: Any) -> tuple[DncSource, Metrics]:
    metrics = Metrics()
    source = DncSource(config(bootstrap), topic, state_dir=str(state_dir), metrics=metrics,
                       poll_timeout_s=0.05, **kwargs)
    await source.start()
    await source.wait_ready(timeout=20)
    return source, metrics


def fill(bootstrap: str, topic: str, partitions: int = 2) -> None:
    produce(bootstrap, topic, [(f"national/{n}".encode(), entry("national")) for n in NUMBERS],
            partitions=partitions)


async def snapshot_once(bootstrap: str, topic: str, state_dir: Path) -> None:
    source, metrics = await run(bootstrap, topic, state_dir)
    await source.close()  # a clean shutdown writes the snapshot
    assert sample(metrics, "cxone_connector_dnc_snapshot_writes_total", outcome="ok") >= 1
    assert snapshot_path(state_dir, topic).exists()


async def test_a_restart_reads_only_the_tail_and_applies_what_changed_meanwhile(
    kafka_bootstrap: str, topic_factory, tmp_path: Path
) -> None:
    topic = topic_factory("dnc", partitions=2, config=COMPACT)
    fill(kafka_bootstrap, topic)
    first, metrics = await run(kafka_bootstrap, topic, tmp_path)
    assert first.bootstrap_records == len(NUMBERS)
    assert sample(metrics, "cxone_connector_dnc_rebuilds_total", reason="none") == 1
    await first.close()
    assert sample(metrics, "cxone_connector_dnc_snapshot_size_bytes") > 0
    # while the instance is down: a tombstone, an add, and a bare-key record
    produce(kafka_bootstrap, topic, [(f"national/{NUMBERS[0]}".encode(), None),
                                     (b"crm-opt-out/+14155559990", entry("crm-opt-out")),
                                     (b"+14155559991", entry("internal"))], partitions=2)
    second, metrics = await run(kafka_bootstrap, topic, tmp_path)
    try:
        assert sample(metrics, "cxone_connector_dnc_snapshot_restored") == 1
        assert second.bootstrap_records == 3  # the tail only
        assert second.lookup(NUMBERS[0]) is None
        assert second.lookup("+14155559990") == "crm-opt-out"
        assert second.lookup("+14155559991") == "internal"
        assert all(second.lookup(n) == "national" for n in NUMBERS[1:])
        assert len(second) == len(NUMBERS) + 1
        await wait_for(lambda: second.currency().current)
    finally:
        await second.close()


def rewrite(path: Path, change: Callable[[SnapshotMeta], SnapshotMeta]) -> None:
    """Rewrite the snapshot with another header (a valid checksum: only the rules can catch it)."""
    with open(path, "rb") as f:
        meta, table = read_dnc_snapshot(f.read)
    path.write_bytes(b"".join(encode_snapshot(change(meta), dnc_body(table))))


def flip_a_bit(path: Path) -> None:
    """One bit of the stored digest: the file no longer matches its checksum (bit flips in the
    header or body are caught as well: tests/unit/test_dnc_snapshot.py flips every position)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])


TAMPERING: dict[str, Callable[[Path], None]] = {
    "checksum": flip_a_bit,
    "truncated": cut,
    "topic_id": lambda p: rewrite(p, lambda m: dataclasses.replace(m, topic_id="AAAAAAAAAAAAAAAAAAAAAA")),
    "partitions": lambda p: rewrite(p, lambda m: dataclasses.replace(
        m, partitions=m.partitions + 1, offsets={**m.offsets, m.partitions: 0})),
    "offset_past_end": lambda p: rewrite(p, lambda m: dataclasses.replace(
        m, offsets={q: o + 1000 for q, o in m.offsets.items()})),
}


@pytest.mark.parametrize("reason", sorted(TAMPERING))
async def test_an_untrusted_snapshot_leads_to_a_full_rebuild(
    kafka_bootstrap: str, topic_factory, tmp_path: Path, reason: str
) -> None:
    topic = topic_factory("dnc", partitions=2, config=COMPACT)
    fill(kafka_bootstrap, topic)
    await snapshot_once(kafka_bootstrap, topic, tmp_path)
    produce(kafka_bootstrap, topic, [(f"national/{NUMBERS[1]}".encode(), None)], partition=1)  # its key's partition
    TAMPERING[reason](snapshot_path(tmp_path, topic))
    source, metrics = await run(kafka_bootstrap, topic, tmp_path)
    try:
        assert sample(metrics, "cxone_connector_dnc_rebuilds_total", reason=reason) == 1
        assert sample(metrics, "cxone_connector_dnc_snapshot_restored") == 0
        assert source.bootstrap_records == len(NUMBERS) + 1  # everything, from offset 0
        assert source.lookup(NUMBERS[1]) is None
        assert sum(1 for n in NUMBERS if source.lookup(n) == "national") == len(NUMBERS) - 1
    finally:
        await source.close()


async def test_a_snapshot_older_than_delete_retention_is_not_trusted(
    kafka_bootstrap: str, topic_factory, tmp_path: Path
) -> None:
    topic = topic_factory("dnc", partitions=2, config={**COMPACT, "delete.retention.ms": "3600000"})
    fill(kafka_bootstrap, topic)
    await snapshot_once(kafka_bootstrap, topic, tmp_path)
    later = time.time() + 3 * 3600  # three hours on: compaction may have dropped tombstones
    source, metrics = await run(kafka_bootstrap, topic, tmp_path, wall_clock=lambda: later)
    try:
        assert sample(metrics, "cxone_connector_dnc_rebuilds_total", reason="too_old") == 1
        assert source.bootstrap_records == len(NUMBERS)
    finally:
        await source.close()


async def test_a_snapshot_before_the_log_start_is_not_trusted(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory, tmp_path: Path
) -> None:
    topic = topic_factory("dnc", partitions=1, config={"cleanup.policy": "compact,delete"})
    fill(kafka_bootstrap, topic, partitions=1)
    await snapshot_once(kafka_bootstrap, topic, tmp_path)  # covers offsets 0..39
    produce(kafka_bootstrap, topic, [(f"national/+1415556{i:04d}".encode(), entry("national")) for i in range(10)])
    futures = kafka_admin.delete_records([TopicPartition(topic, 0, 45)])
    for fut in futures.values():
        fut.result(timeout=30)
    source, metrics = await run(kafka_bootstrap, topic, tmp_path)
    try:
        assert sample(metrics, "cxone_connector_dnc_rebuilds_total", reason="offset_before_start") == 1
        assert source.bootstrap_records == 5  # what is left of the log: offsets 45..49
    finally:
        await source.close()


class Crash(Exception):
    """Stands for the process dying between the write and the rename."""


async def test_a_crash_between_write_and_rename_leaves_the_previous_snapshot(
    kafka_bootstrap: str, topic_factory, tmp_path: Path
) -> None:
    topic = topic_factory("dnc", partitions=2, config=COMPACT)
    fill(kafka_bootstrap, topic)
    await snapshot_once(kafka_bootstrap, topic, tmp_path)
    path = snapshot_path(tmp_path, topic)
    before = path.read_bytes()

    def crash(_tmp: Path) -> None:
        raise Crash

    produce(kafka_bootstrap, topic, [(b"national/+14155559980", entry("national"))])
    source = DncSource(config(kafka_bootstrap), topic, state_dir=str(tmp_path), before_rename=crash)
    await source.start()
    try:
        # its first snapshot, right after it is ready, crashes the thread, as a real crash would
        await wait_for(lambda: source.failure is not None, timeout=20)
        assert not source.currency().current
    finally:
        await source.close()
    assert path.read_bytes() == before
    produce(kafka_bootstrap, topic, [(f"national/{NUMBERS[2]}".encode(), None)], partition=0)  # its key's partition
    again, metrics = await run(kafka_bootstrap, topic, tmp_path)
    try:
        assert sample(metrics, "cxone_connector_dnc_snapshot_restored") == 1
        assert again.bootstrap_records == 2  # the tail past the previous snapshot
        assert again.lookup("+14155559980") == "national" and again.lookup(NUMBERS[2]) is None
    finally:
        await again.close()


WRITER = textwrap.dedent("""
    import sys, time
    from connector.kafka.dnc_state import SnapshotStore
    def chunks():
        yield b"x" * 1000
        print("writing", flush=True)
        while True:
            time.sleep(0.05)
            yield b"y" * 1000
    SnapshotStore(sys.argv[1], sys.argv[2]).write(chunks())
""")


async def test_a_writer_killed_mid_write_leaves_the_previous_snapshot_usable(
    kafka_bootstrap: str, topic_factory, tmp_path: Path
) -> None:
    topic = topic_factory("dnc", partitions=2, config=COMPACT)
    fill(kafka_bootstrap, topic)
    await snapshot_once(kafka_bootstrap, topic, tmp_path)
    path = snapshot_path(tmp_path, topic)
    before = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), path.name],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
        # the writer's buffer reaches the disk after a few chunks: wait for it (a loaded
        # machine may take longer than a fixed sleep)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            leftovers = list(tmp_path.glob(f".{path.name}.*.tmp"))
            if leftovers and leftovers[0].stat().st_size > 0:
                break
            await asyncio.sleep(0.05)
        assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # killed mid-write
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    with open(path, "rb") as f:
        meta, table = read_dnc_snapshot(f.read)
    assert meta.topic == topic and len(table) == len(NUMBERS)
    source, metrics = await run(kafka_bootstrap, topic, tmp_path)
    try:
        assert sample(metrics, "cxone_connector_dnc_snapshot_restored") == 1
        assert source.bootstrap_records == 0 and len(source) == len(NUMBERS)
    finally:
        await source.close()
