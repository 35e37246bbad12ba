"""DNC cold bootstrap rate against raw ``consume`` of the same topic, and memory per number.

A compacted topic of ``--count`` numbers (default 10,000,000; the synthetic numbers of
``bench_dnc_memory.py``) keyed ``national/+<E.164>``, with one shared ``DncEntry`` value (as
``dnc load`` writes a list), is produced once, fast (big lz4 batches), and reused by later
runs when it still holds ``--count`` records. Then, each in a fresh child process so that
resident memory shows only what it builds:

- ``DncSource`` bootstraps the topic cold (no snapshot) into its ``DncTable``: records per
  second from the source's creation to ready (``bootstrap_records / bootstrap_seconds``:
  connecting, reading, applying and the final compaction), resident memory growth (RSS delta,
  read after the source closed its consumer and the heap was trimmed) and the table's own
  estimate, per number;
- a plain consumer with the DNC source's consumer settings reads the same records and does
  nothing with them: the physical limit on this broker and machine (first record to the end).

Prints the cold rate, the raw rate and their ratio. Targets: >= 500,000 records/s cold (aim
1,000,000) and <= 4 bytes per number.

Usage: ``python bench/bench_dnc_bootstrap.py [--count N] [--partitions P] [--recreate] [--delete]``
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

from connector.core.dnc_keys import dnc_key
from connector.core.dnc_table import DncTable
from connector.kafka.dnc_follower import FAST_FETCH
from connector.kafka.dnc_source import DncSource

TARGET_RATE = 500_000
AIM_RATE = 1_000_000
TARGET_BYTES = 4.0
SEED = 20240115


def topic_name(count: int) -> str:
    """The reused topic: one per size."""
    return f"bench.dnc-bootstrap-keyed.{count}"


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
    prefix = dnc_key("national", "+10")[:-3]  # b"national/"
    for chunk in synthetic_numbers(count, SEED):
        for number in chunk:
            producer.produce(topic, b"%s+%d" % (prefix, number), value)
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


def _raw_consume(bootstrap: str, topic: str) -> dict[str, Any]:
    """Read every record with the DNC source's consumer settings and do nothing with them."""
    consumer = Consumer({**FAST_FETCH, "bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": "false", "enable.partition.eof": "true"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    pending = set(parts)
    records = 0
    started: float | None = None
    while pending:
        messages = consumer.consume(num_messages=2_000, timeout=0.5)
        if started is None and messages:
            started = time.perf_counter()
        for msg in messages:
            if msg.error() is not None:
                pending.discard(msg.partition())
            else:
                records += 1
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return {"records": records, "seconds": seconds}


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
    parser.add_argument("--delete", action="store_true", help="delete the topic afterwards")
    parser.add_argument("--phase", choices=("table", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase == "table":
        print(json.dumps(asyncio.run(_bootstrap_table(args.bootstrap, args.topic))))
        return 0
    if args.phase == "raw":
        print(json.dumps(_raw_consume(args.bootstrap, args.topic)))
        return 0

    print(f"DNC bootstrap benchmark: {args.count:,} numbers", flush=True)
    benchlib.print_machine()
    topic = topic_name(args.count)
    ensure_topic(args.bootstrap, topic, args.count, args.partitions, args.recreate)

    raw = _child("raw", args.bootstrap, topic)
    table = _child("table", args.bootstrap, topic)
    if args.delete:
        benchlib.delete_topics(args.bootstrap, [topic])
    t_rate = table["records"] / table["seconds"]
    r_rate = raw["records"] / raw["seconds"]
    t_per = table["rss_delta"] / table["numbers"]
    print(f"raw consume:           {raw['records']:,} records in {raw['seconds']:.1f}s = {r_rate:,.0f} records/s")
    print(f"DncSource cold:        {table['records']:,} records in {table['seconds']:.1f}s = {t_rate:,.0f} records/s; "
          f"{table['numbers']:,} numbers")
    print(f"  RSS delta {table['rss_delta'] / 2**20:.1f} MiB = {t_per:.2f} B/number "
          f"(peak while bootstrapping {table['rss_peak_delta'] / 2**20:.1f} MiB); "
          f"own estimate {table['estimate'] / table['numbers']:.2f} B/number")
    print(f"ratio cold/raw:        {t_rate / r_rate:6.2f}")
    rate_ok = t_rate >= TARGET_RATE
    mem_ok = t_per <= TARGET_BYTES
    print(f"target >= {TARGET_RATE:,} records/s: {'met' if rate_ok else 'MISSED'} ({t_rate:,.0f}); "
          f"aim {AIM_RATE:,}: {'met' if t_rate >= AIM_RATE else 'not met'}")
    print(f"target <= {TARGET_BYTES} B/number: {'met' if mem_ok else 'MISSED'} ({t_per:.2f})", flush=True)
    return 0 if rate_ok and mem_ok else 1


if __name__ == "__main__":
    sys.exit(main())
