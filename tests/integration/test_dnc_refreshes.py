"""DncRefreshReader on the real broker, with an injected clock: the freshness gate says stale at
day 31 and not at day 30, and ok again once ``dnc sync`` writes a fresh record."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from prometheus_client import generate_latest

from connector.cli import main
from connector.config import load_settings
from connector.core.dnc_freshness import ListPolicy
from connector.kafka.dnc_refreshes import DncRefreshError, DncRefreshReader
from connector.ops.metrics import Metrics

pytestmark = pytest.mark.kafka

COMPACT = {"cleanup.policy": "compact"}
POLICIES = {"national": ListPolicy(max_age_days=31)}


def utc(year: int, month: int, day: int, hour: int = 0) -> float:
    return dt.datetime(year, month, day, hour, tzinfo=dt.timezone.utc).timestamp()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for ``check`` (records travel through the broker and the reader's thread)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def reader_factory(kafka_bootstrap: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[DncRefreshReader] = []

    async def make(topic: str, policies: dict[str, ListPolicy] | None = None, **kwargs: Any) -> DncRefreshReader:
        kwargs.setdefault("metrics", Metrics())
        reader = DncRefreshReader({"bootstrap.servers": kafka_bootstrap}, topic,
                                  POLICIES if policies is None else policies, **kwargs)
        await reader.start()
        started.append(reader)
        return reader

    yield make
    for reader in started:
        await reader.close()


async def sync(bootstrap: str, dnc: str, lists: str, path: Path, as_of: str) -> int:
    argv = ["dnc", "sync", "--list", "national", "--full", str(path), "--as-of", as_of, "--max-remove-share", "1",
            "--bootstrap-servers", bootstrap, "--topic", dnc, "--lists-topic", lists]
    return await asyncio.to_thread(main, argv)


async def synced(bootstrap: str, topic_factory: Any, tmp_path: Path, lines: str, as_of: str) -> tuple[str, str, Path]:
    """New DNC and refresh topics, after a first sync of ``lines`` as of ``as_of``."""
    dnc, lists = topic_factory("dnc", config=COMPACT), topic_factory("lists", config=COMPACT)
    registry = tmp_path / "national.txt"
    registry.write_text(lines)
    assert await sync(bootstrap, dnc, lists, registry, as_of) == 0
    return dnc, lists, registry


async def test_stale_at_day_31_and_fresh_again_after_a_sync(
    kafka_bootstrap: str, topic_factory: Any, reader_factory: Any, tmp_path: Path
) -> None:
    dnc, lists, registry = await synced(kafka_bootstrap, topic_factory, tmp_path, "415,5550100\n415,5550101\n",
                                        "2026-10-01")

    metrics = Metrics()
    reader = await reader_factory(lists, metrics=metrics)
    await reader.wait_ready(30)
    assert reader.records["national"].as_of == dt.date(2026, 10, 1)
    assert reader.status(utc(2026, 10, 31, 12)) == (True, "ok")            # day 30
    ok, reason = reader.status(utc(2026, 11, 1))                            # day 31, 00:00 UTC
    assert not ok
    assert reason == ("DNC list 'national' is stale: registry copy of 2026-10-01 is 31.0 days old "
                      "(limit 31 days)")
    exported = re.search(r'^cxone_connector_dnc_list_age_seconds\{list="national"\} (\S+)$',
                         generate_latest(metrics.registry).decode(), re.M)
    assert exported is not None
    age_days = float(exported.group(1)) / 86_400  # the collector's clock is the real one
    assert math.isfinite(age_days) and age_days >= (dt.date.today() - dt.date(2026, 10, 2)).days

    registry.write_text("415,5550100\n415,5550102\n")
    assert await sync(kafka_bootstrap, dnc, lists, registry, "2026-11-01") == 0
    await eventually(lambda: reader.records["national"].as_of == dt.date(2026, 11, 1), "the new record")
    assert reader.status(utc(2026, 11, 1, 9)) == (True, "ok")
    assert reader.records["national"].adds == 1 and reader.records["national"].removes == 1
    assert not reader.status(utc(2026, 12, 2))[0]


async def test_a_list_with_a_limit_and_no_record_is_stale_and_others_do_not_block(
    kafka_bootstrap: str, topic_factory: Any, reader_factory: Any
) -> None:
    lists = topic_factory("lists", config=COMPACT)
    policies = {"national": ListPolicy(31), "state-fl": ListPolicy(31, enforce=False), "crm-opt-out": ListPolicy()}
    reader = await reader_factory(lists, policies)
    await reader.wait_ready(30)  # an empty topic is read at once
    ok, reason = reader.status(utc(2026, 11, 1))
    assert not ok
    assert reason == ("DNC list 'national' has no refresh record (limit 31 days): run 'cxone-connector dnc sync'; "
                      "DNC list 'state-fl' has no refresh record (limit 31 days): run 'cxone-connector dnc sync' "
                      "(not enforced)")


async def test_tombstones_and_unreadable_records_fail_closed(
    kafka_bootstrap: str, topic_factory: Any, reader_factory: Any, tmp_path: Path
) -> None:
    dnc, lists, registry = await synced(kafka_bootstrap, topic_factory, tmp_path, "415,5550100\n", "2026-11-01")
    reader = await reader_factory(lists)
    await reader.wait_ready(30)
    assert reader.status(utc(2026, 11, 2))[0]

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(lists, key=b"national", value=b"\x02garbage")
    producer.produce(lists, key=b"not/a list", value=b"")   # skipped: no list name
    assert producer.flush(10) == 0
    await eventually(lambda: "national" in reader.unreadable, "the unreadable record")
    ok, reason = reader.status(utc(2026, 11, 2))
    assert not ok and "'national' has an unreadable refresh record" in reason

    producer.produce(lists, key=b"national", value=None)
    assert producer.flush(10) == 0
    await eventually(lambda: "national" not in reader.unreadable, "the tombstone")
    ok, reason = reader.status(utc(2026, 11, 2))
    assert not ok and "'national' has no refresh record" in reason
    assert "national" not in reader.records


async def test_an_unreachable_broker_is_waited_out(reader_factory: Any, topic_factory: Any) -> None:
    reader = DncRefreshReader({"bootstrap.servers": "127.0.0.1:1"}, "dnc.lists", POLICIES, metrics=Metrics(),
                              metadata_timeout_s=0.5, retry_interval_s=0.1)
    await reader.start()
    try:
        with pytest.raises(DncRefreshError) as info:
            await reader.wait_ready(2)
        assert info.value.retriable
        ok, reason = reader.status(utc(2026, 11, 1))
        assert not ok and reason.startswith("DNC list refresh records not read yet from dnc.lists (")
        assert reader.failure is None  # waiting, not crashed
    finally:
        await reader.close()


async def test_a_vanished_topic_after_the_bootstrap_stops_submission(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory: Any, reader_factory: Any, tmp_path: Path
) -> None:
    dnc, lists, registry = await synced(kafka_bootstrap, topic_factory, tmp_path, "415,5550100\n", "2026-11-01")
    reader = await reader_factory(lists, probe_interval_s=0.2, metadata_timeout_s=2.0, max_outage_s=0.0)
    await reader.wait_ready(30)
    assert reader.status(utc(2026, 11, 2)) == (True, "ok")
    kafka_admin.delete_topics([lists], operation_timeout=30)[lists].result(timeout=30)
    await eventually(lambda: not reader.status(utc(2026, 11, 2))[0], "the outage")
    ok, reason = reader.status(utc(2026, 11, 2))
    assert reason.startswith(f"DNC refresh topic {lists} unreachable for ")
    assert reader.records["national"].as_of == dt.date(2026, 11, 1)  # kept for when it is back
    assert reader.failure is None


async def test_from_settings_reads_the_configured_topic_and_policies(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    dnc, lists, registry = await synced(kafka_bootstrap, topic_factory, tmp_path, "415,5550100\n", "2026-11-01")
    settings = load_settings({"kafka": {"bootstrap_servers": kafka_bootstrap}, "topics": {"dnc_lists": lists},
                              "dnc": {"lists": {"national": {"max_age_days": 31}, "state-fl": {"enforce": False}}}},
                             env={})
    reader = DncRefreshReader.from_settings(settings, metrics=Metrics())
    assert reader.topic == lists
    assert reader.policies == {"national": ListPolicy(31, True), "state-fl": ListPolicy(None, False)}
    await reader.start()
    try:
        await reader.wait_ready(30)
        assert reader.status(utc(2026, 12, 1, 23)) == (True, "ok")   # day 30
        assert not reader.status(utc(2026, 12, 2))[0]                 # day 31
    finally:
        await reader.close()
