"""Shared fixtures: a real Kafka broker and unique topics per test.

The broker is whatever ``KAFKA_BOOTSTRAP_SERVERS`` names; otherwise the local broker on
127.0.0.1:9092, started with ``deploy/local/kafka.sh`` when nothing listens there. The
fixture leaves it running for the next session; ``.ci/run`` stops what it started.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BOOTSTRAP = f"127.0.0.1:{os.environ.get('CXONE_KAFKA_PORT', '9092')}"


def _listening(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of a running broker whose metadata answers."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP
    if not _listening(bootstrap):
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} does not accept connections")
        subprocess.run([str(ROOT / "deploy/local/kafka.sh"), "start"], check=True, timeout=600)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.list_topics(timeout=5)
            return bootstrap
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


TopicFactory = Callable[..., str]


@pytest.fixture
def topic_factory(kafka_admin: AdminClient, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Create topics whose names are unique to this test; deleted afterwards.

    Call as ``topic_factory("dnc", partitions=3, config={"cleanup.policy": "compact"})``.
    """
    created: list[str] = []
    test = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[:60].strip("-")

    def make(role: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"test.{test}.{role}.{uuid.uuid4().hex[:8]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        # Wait until the new topic's partitions have leaders in the metadata.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = kafka_admin.list_topics(name, timeout=5).topics.get(name)
            if md is not None and md.error is None and len(md.partitions) == partitions and all(
                p.leader >= 0 for p in md.partitions.values()
            ):
                break
            time.sleep(0.1)
        created.append(name)
        return name

    yield make
    if created:
        for fut in kafka_admin.delete_topics(created, operation_timeout=30).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: S110 - best-effort clean-up of test topics
                pass
