"""DNC bootstrap rate and memory per number, against a Python ``set`` of E.164 strings.

A compacted topic of ``--count`` numbers (default 10,000,000; the synthetic numbers of
``bench_dnc_memory.py``) is produced once, fast (big lz4 batches, one shared value), and
reused by later runs when it still holds ``--count`` records. Then, each in a fresh child
process so that resident memory shows only what it builds:

- ``DncSource`` bootstraps the topic into its ``DncTable``: records per second (the
  source's own ``bootstrap_records / bootstrap_seconds``), resident memory growth (RSS delta,
  measured after the source closed its consumer and the heap was trimmed) and the table's
  own estimate, per number;
- a plain consumer reads the same records into a ``set`` of E.164 strings: the same figures.

Prints the ratios. Targets: >= 200,000 records/s and <= 4 bytes per number.

Usage: ``python bench/bench_dnc_bootstrap.py [--count N] [--partitions P] [--recreate]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import benchlib
from bench_dnc_memory import synthetic_numbers
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connector.core.dnc_table import DncTable
from connector.kafka.dnc_source import DncSource

TARGET_RATE = 200_000
TARGET_BYTES = 4.0
SEED = 20240115


def topic_name(count: int) -> str:
    """The reused topic: one per size."""
    return f"bench.dnc-bootstrap.{count}"


def ensure_topic(bootstrap: str, topic: str, count: int, partitions: int, recreate: bool) -> None:
    """Produce the topic unless it already holds ``count`` records."""
    existing = benchlib.topic_count(bootstrap, topic)
    if existing == count and not recreate:
        print(f"reusing {topic} ({count:,} records)", flush=True)
        return
    if existing is not None:
        benchlib.delete_topics(bootstrap, [topic])
        time.sleep(2)  # let the broker forget the old topic before creating it again
    benchlib.create_topics(bootstrap, {topic: (partitions, {"cleanup.policy": "compact"})})
    value = benchlib.avro_writer("DncEntry")({"list_name": "national", "reason": "registry",
                                               "added_at": 1_700_000_000_000, "expires_at": None})
    producer = benchlib.FastProducer(bootstrap)
    started = time.perf_counter()
    for chunk in synthetic_numbers(count, SEED):
        for number in chunk:
            producer.produce(topic, b"+%d" % number, value)
    producer.flush(600.0)
    print(f"produced {topic}: {count:,} records in {time.perf_counter() - started:.1f}s", flush=True)


# ------------------------------------------------------------------ child processes


async def _bootstrap_table(bootstrap: str, topic: str) -> dict[str, Any]:
    benchlib.settle_memory()
    before = benchlib.rss_bytes()
    table = DncTable()
    source = DncSource({"bootstrap.servers": bootstrap, "group.id": f"bench-dnc-{uuid.uuid4().hex[:8]}"},
                       topic, table)
    await source.start()
    await source.wait_ready(3600)
    peak = benchlib.rss_bytes()
    await source.close()
    benchlib.settle_memory()
    after = benchlib.rss_bytes()
    records = source.bootstrap_records
    seconds = source.bootstrap_seconds or 0.0
    return {"records": records, "seconds": seconds, "numbers": len(table), "rss_delta": after - before,
            "rss_peak_delta": peak - before, "estimate": table.memory_bytes()}


def _bootstrap_set(bootstrap: str, topic: str) -> dict[str, Any]:
    benchlib.settle_memory()
    before = benchlib.rss_bytes()
    numbers: set[str] = set()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-set-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": "false"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    high = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    pending = {p for p, h in high.items() if h > 0}
    records = 0
    started = time.perf_counter()
    while pending:
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            if msg.error() is not None:
                continue
            records += 1
            key = msg.key()
            if key is None:
                continue
            if msg.value() is None:
                numbers.discard(key.decode("ascii"))
            else:
                numbers.add(key.decode("ascii"))
            partition, offset = msg.partition(), msg.offset()
            if partition is not None and offset is not None and offset + 1 >= high[partition]:
                pending.discard(partition)
    seconds = time.perf_counter() - started
    peak = benchlib.rss_bytes()
    consumer.close()
    benchlib.settle_memory()
    after = benchlib.rss_bytes()
    return {"records": records, "seconds": seconds, "numbers": len(numbers), "rss_delta": after - before,
            "rss_peak_delta": peak - before, "estimate": None}


def _child(phase: str, bootstrap: str, topic: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--phase", phase, "--bootstrap", bootstrap,
                           "--topic", topic], capture_output=True, text=True, check=False, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"phase {phase} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000_000, help="numbers on the compacted topic")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bootstrap", default=benchlib.DEFAULT_BOOTSTRAP)
    parser.add_argument("--recreate", action="store_true", help="produce the topic again even if it exists")
    parser.add_argument("--phase", choices=("table", "set"), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase == "table":
        print(json.dumps(asyncio.run(_bootstrap_table(args.bootstrap, args.topic))))
        return 0
    if args.phase == "set":
        print(json.dumps(_bootstrap_set(args.bootstrap, args.topic)))
        return 0

    print(f"DNC bootstrap benchmark: {args.count:,} numbers", flush=True)
    benchlib.print_machine()
    topic = topic_name(args.count)
    ensure_topic(args.bootstrap, topic, args.count, args.partitions, args.recreate)

    table = _child("table", args.bootstrap, topic)
    numbers = _child("set", args.bootstrap, topic)
    t_rate = table["records"] / table["seconds"]
    s_rate = numbers["records"] / numbers["seconds"]
    t_per = table["rss_delta"] / table["numbers"]
    s_per = numbers["rss_delta"] / numbers["numbers"]
    print(f"DncSource bootstrap:   {table['records']:,} records in {table['seconds']:.1f}s = {t_rate:,.0f} records/s; "
          f"{table['numbers']:,} numbers")
    print(f"  RSS delta {table['rss_delta'] / 2**20:.1f} MiB = {t_per:.2f} B/number "
          f"(peak while bootstrapping {table['rss_peak_delta'] / 2**20:.1f} MiB); "
          f"own estimate {table['estimate'] / table['numbers']:.2f} B/number")
    print(f"set[str] bootstrap:    {numbers['records']:,} records in {numbers['seconds']:.1f}s = "
          f"{s_rate:,.0f} records/s; {numbers['numbers']:,} numbers")
    print(f"  RSS delta {numbers['rss_delta'] / 2**20:.1f} MiB = {s_per:.2f} B/number "
          f"(peak {numbers['rss_peak_delta'] / 2**20:.1f} MiB)")
    print(f"ratio rate DncSource/set:     {t_rate / s_rate:6.2f}")
    print(f"ratio memory set/DncSource:   {s_per / t_per:6.1f}x smaller")
    rate_ok = t_rate >= TARGET_RATE
    mem_ok = t_per <= TARGET_BYTES
    print(f"target >= {TARGET_RATE:,} records/s: {'met' if rate_ok else 'MISSED'} ({t_rate:,.0f})")
    print(f"target <= {TARGET_BYTES} B/number: {'met' if mem_ok else 'MISSED'} ({t_per:.2f})", flush=True)
    return 0 if rate_ok and mem_ok else 1


if __name__ == "__main__":
    sys.exit(main())
