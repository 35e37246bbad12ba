"""Helpers shared by the benchmarks: machine facts, topics, fast producing, memory.

Not a benchmark itself (``run_all.py`` runs only ``bench_*.py``). Everything here talks to
the local broker or ``/proc``; nothing is timed here.
"""

from __future__ import annotations

import datetime
import gc
import io
import os
import platform
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro import schemaless_writer

from connector.ops.runtime import release_free_heap
from connector.serde.codec import schema

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"


# ---------------------------------------------------------------------------- machine


def kafka_version() -> str:
    """The broker version pinned by ``deploy/local/kafka.sh`` (the broker the bench runs on)."""
    script = ROOT / "deploy/local/kafka.sh"
    try:
        found = re.search(r"^KAFKA_VERSION=(\S+)", script.read_text(encoding="utf-8"), re.M)
    except OSError:
        return "unknown"
    return found.group(1) if found else "unknown"


def machine() -> dict[str, str]:
    """Date, cores, CPU model, RAM, Kafka and Python versions, and the load at start."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{ram / 2**30:.1f} GiB",
        "kafka": kafka_version(),
        "python": platform.python_version(),
        "load": load,
    }


def print_machine() -> None:
    """One line with :func:`machine` (goes into docs/benchmarks.md)."""
    m = machine()
    print(f"machine: {m['date']}; nproc {m['nproc']}; {m['cpu']}; RAM {m['ram']}; Kafka {m['kafka']}; "
          f"Python {m['python']}; load average at start {m['load']}", flush=True)


# ----------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle_memory() -> None:
    """Collect garbage and give freed heap back to the OS, so RSS shows what is live."""
    gc.collect()
    release_free_heap()  # not glibc: a no-op, and RSS may then include freed heap


# ----------------------------------------------------------------------------- topics


def unique_prefix(name: str) -> str:
    """``bench.<name>.<utc time>-<random>``: topic names no other run or test uses."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"bench.{name}.{stamp}-{uuid.uuid4().hex[:6]}"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topics(bootstrap: str, topics: Mapping[str, tuple[int, Mapping[str, str]]]) -> None:
    """Create ``{name: (partitions, config)}`` and wait until every partition has a leader.

    Raises:
        confluent_kafka.KafkaException: a topic could not be created.
        TimeoutError: the leaders did not appear within 30 s.
    """
    client = admin(bootstrap)
    new = [NewTopic(n, num_partitions=p, replication_factor=1, config=dict(c)) for n, (p, c) in topics.items()]
    for fut in client.create_topics(new, operation_timeout=30).values():
        fut.result(timeout=60)
    deadline = time.monotonic() + 30
    for name, (partitions, _) in topics.items():
        while True:
            md = client.list_topics(name, timeout=5).topics.get(name)
            if md is not None and md.error is None and len(md.partitions) == partitions and all(
                p.leader >= 0 for p in md.partitions.values()
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} has no leaders after 30s")
            time.sleep(0.1)


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics, best effort (a benchmark's clean-up must not hide its result)."""
    names = list(names)
    if not names:
        return
    client = admin(bootstrap)  # kept alive until every future resolved
    for name, fut in client.delete_topics(names, operation_timeout=30).items():
        try:
            fut.result(timeout=60)
        except Exception as exc:
            print(f"warning: could not delete topic {name}: {exc}")


def topic_count(bootstrap: str, topic: str) -> int | None:
    """Records between the low and high watermarks of every partition; None when absent."""
    # All topics, not list_topics(topic): asking for one by name may auto-create it.
    md = admin(bootstrap).list_topics(timeout=10).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        return None
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-count-{uuid.uuid4().hex}"})
    try:
        total = 0
        for p in md.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - max(low, 0)
        return total
    finally:
        consumer.close()


# --------------------------------------------------------------------------- producing


def avro_writer(name: str) -> Callable[[Mapping[str, Any]], bytes]:
    """A fast schemaless encoder of schema ``name`` (no validation: trusted bench data)."""
    parsed = schema(name)

    def encode(record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        schemaless_writer(buf, parsed, dict(record))
        return buf.getvalue()

    return encode


class FastProducer:
    """Bulk producing for set-ups: big lz4 batches, errors counted, a full queue waited out."""

    def __init__(self, bootstrap: str, **overrides: str) -> None:
        config: dict[str, str] = {
            "bootstrap.servers": bootstrap,
            "client.id": "cxone-connector-bench",
            "linger.ms": "100",
            "batch.size": "1000000",
            "batch.num.messages": "100000",
            "compression.type": "lz4",
            "queue.buffering.max.messages": "1000000",
            "queue.buffering.max.kbytes": "1048576",
        }
        config.update(overrides)
        self._producer = Producer(config)
        self.failed = 0
        self.first_error: str | None = None
        self.produced = 0

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or str(err)

    def produce(self, topic: str, key: bytes, value: bytes | None, timestamp: int = 0) -> None:
        """Queue one record (``timestamp`` in epoch ms; 0 lets librdkafka stamp it)."""
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery, timestamp=timestamp)
                break
            except BufferError:
                self._producer.poll(0.05)
        self.produced += 1
        if self.produced % 10_000 == 0:
            self._producer.poll(0)

    def flush(self, timeout: float = 300.0) -> None:
        """Wait for every record.

        Raises:
            RuntimeError: records were not delivered.
        """
        left = self._producer.flush(timeout)
        if left or self.failed:
            raise RuntimeError(f"{left + self.failed} record(s) not delivered: {self.first_error}")
