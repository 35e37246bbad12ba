"""The DNC table at registry scale: memory, snapshots, cold bootstrap and restart-to-ready.

Not in CI. For each size (``--sizes``, the largest being ``--count``; default 250,000,000 with
62,500,000 and 125,000,000 before it), a compacted topic of that many numbers is produced
(keys ``national/+1NPANXXXXXX``, one shared value, 4 partitions, ``min.compaction.lag.ms`` one
day so the broker's cleaner leaves it alone while measured) and deleted after its
measurements. The numbers spread like the US registry: NANP area codes and exchanges (no N11,
no N9X area codes), about 8 % of the numbers of each exchange in use listed (``--density``), as
many exchanges as the size needs, in random order. Then, each in a fresh child process:

- **raw**: a plain consumer with the DNC source's settings reads every record (the limit);
- **cold**: ``DncSource`` with an empty state directory: restart-to-ready without a snapshot
  (creation until the table is *current*: caught up, and every partition answered a fetch),
  its rate, resident memory per number (RSS growth after the source is
  closed and the heap trimmed), then its first snapshot's size and write time;
- **restart**: ``DncSource`` on the same state directory: restart-to-ready with the snapshot,
  and the restore time (reading and checking the file).

It prints one table row per size, a projection to 258,500,000 numbers (least squares, linear in
the count, over every size measured) when the largest size is below it, and last exactly::

    dnc-registry: count=N bytes_per_number=X cold_rate=N restore_s=X restart_ratio=X

for the largest size (``restart_ratio`` = restart-to-ready with a snapshot / without one).

Usage: ``python bench/bench_dnc_registry.py [--count N] [--sizes A,B,C] [--density D]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import benchlib
from bench_dnc_bootstrap import _raw_consume

from connector.kafka.dnc_source import DncSource
from connector.ops.metrics import Metrics

REGISTRY = 258_500_000
SEED = 20250930
#: NANP area codes: NXX with N 2-9, not N11, not N9X (reserved for expansion).
NPAS = [n for n in range(200, 1000) if n % 100 != 11 and (n // 10) % 10 != 9]
#: Exchanges: NXX with N 2-9, not N11.
NXXS = [x for x in range(200, 1000) if x % 100 != 11]


def registry_numbers(count: int, seed: int, density: float) -> Iterator[list[int]]:
    """``count`` US numbers in chunks: ``density`` of the lines of each exchange in use."""
    rng = random.Random(seed)
    per_exchange = max(1, round(10_000 * density))
    exchanges = math.ceil(count / per_exchange)
    if exchanges > len(NPAS) * len(NXXS):
        raise ValueError(f"{count:,} numbers at {density:.0%} need more exchanges than the NANP has")
    made = 0
    chunk: list[int] = []
    for index in rng.sample(range(len(NPAS) * len(NXXS)), exchanges):
        npa, nxx = NPAS[index // len(NXXS)], NXXS[index % len(NXXS)]
        base = 10_000_000_000 + npa * 10_000_000 + nxx * 10_000
        take = min(per_exchange, count - made)
        chunk.extend(base + line for line in rng.sample(range(10_000), take))
        made += take
        if len(chunk) >= 65_536:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def produce(bootstrap: str, topic: str, count: int, density: float) -> float:
    benchlib.create_topics(bootstrap, {topic: (4, {"cleanup.policy": "compact", "min.compaction.lag.ms": "86400000"})})
    value = benchlib.avro_writer("DncEntry")({"list_name": "national", "reason": "registry",
                                               "added_at": 1_700_000_000_000, "expires_at": None})
    producer = benchlib.FastProducer(bootstrap)
    started = time.perf_counter()
    for chunk in registry_numbers(count, SEED, density):
        for number in chunk:
            producer.produce(topic, b"national/+%d" % number, value)
    producer.flush(3600.0)
    return time.perf_counter() - started


# ------------------------------------------------------------------ child processes


def _source(bootstrap: str, topic: str, state_dir: str, metrics: Metrics) -> DncSource:
    return DncSource({"bootstrap.servers": bootstrap, "group.id": f"bench-registry-{uuid.uuid4().hex[:8]}"},
                     topic, state_dir=state_dir, snapshot_interval_s=10**9, metrics=metrics)


async def _until_current(source: DncSource, started: float) -> float:
    """Seconds from ``started`` until the table is current (ready, and every partition
    answered a fetch): when the connector may submit again."""
    await source.wait_ready(7200)
    while not source.currency().current:
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def _cold(bootstrap: str, topic: str, state_dir: str) -> dict[str, Any]:
    benchlib.settle_memory()
    before = benchlib.rss_bytes()
    metrics = Metrics()
    started = time.monotonic()
    source = _source(bootstrap, topic, state_dir, metrics)
    await source.start()
    seconds = await _until_current(source, started)
    sample = metrics.registry.get_sample_value
    while not sample("cxone_connector_dnc_snapshot_writes_total", {"outcome": "ok"}):
        await asyncio.sleep(0.1)  # the first snapshot, written right after the bootstrap
    numbers = len(source)
    await source.close(timeout=600)
    benchlib.settle_memory()
    return {"records": source.bootstrap_records, "seconds": seconds, "numbers": numbers,
            "rss_delta": benchlib.rss_bytes() - before,
            "snapshot_bytes": sample("cxone_connector_dnc_snapshot_size_bytes"),
            "snapshot_write_s": sample("cxone_connector_dnc_snapshot_write_duration_seconds")}


async def _restart(bootstrap: str, topic: str, state_dir: str) -> dict[str, Any]:
    metrics = Metrics()
    started = time.monotonic()
    source = _source(bootstrap, topic, state_dir, metrics)
    await source.start()
    seconds = await _until_current(source, started)
    sample = metrics.registry.get_sample_value
    result = {"seconds": seconds, "records": source.bootstrap_records,
              "restored": sample("cxone_connector_dnc_snapshot_restored"),
              "restore_s": sample("cxone_connector_dnc_snapshot_restore_duration_seconds"), "numbers": len(source)}
    await source.close(timeout=600)
    return result


def _child(phase: str, bootstrap: str, topic: str, state_dir: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--phase", phase, "--bootstrap", bootstrap, "--topic", topic,
                           "--state-dir", state_dir], capture_output=True, text=True, check=False, timeout=7200)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"phase {phase} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(bootstrap: str, count: int, density: float) -> dict[str, Any]:
    topic = f"{benchlib.unique_prefix('dnc-registry')}.{count}"
    state_dir = tempfile.mkdtemp(prefix="dnc-registry-")
    try:
        produced_s = produce(bootstrap, topic, count, density)
        raw = _child("raw", bootstrap, topic, state_dir)
        cold = _child("cold", bootstrap, topic, state_dir)
        restart = _child("restart", bootstrap, topic, state_dir)
    finally:
        benchlib.delete_topics(bootstrap, [topic])
        shutil.rmtree(state_dir, ignore_errors=True)
    if restart["restored"] != 1 or restart["numbers"] != cold["numbers"]:
        raise RuntimeError(f"the restart did not restore the snapshot: {restart}")
    return {
        "count": count, "produced_s": produced_s, "numbers": cold["numbers"],
        "bytes_per_number": cold["rss_delta"] / cold["numbers"],
        "raw_rate": raw["records"] / raw["seconds"], "cold_rate": cold["records"] / cold["seconds"],
        "cold_s": cold["seconds"], "snapshot_bytes": cold["snapshot_bytes"],
        "snapshot_write_s": cold["snapshot_write_s"], "restore_s": restart["restore_s"],
        "restart_s": restart["seconds"], "tail_records": restart["records"],
    }


def fit(points: list[tuple[float, float]], x: float) -> float:
    """The least-squares line through ``points``, at ``x``."""
    n = len(points)
    mx, my = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0.0
    return my + slope * (x - mx)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=250_000_000, help="the largest size")
    parser.add_argument("--sizes", default="", help="comma-separated sizes (default: count/4, count/2, count)")
    parser.add_argument("--density", type=float, default=0.08, help="listed share of an exchange's lines")
    parser.add_argument("--bootstrap", default=benchlib.DEFAULT_BOOTSTRAP)
    parser.add_argument("--phase", choices=("raw", "cold", "restart"), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase == "raw":
        print(json.dumps(_raw_consume(args.bootstrap, args.topic)))
        return 0
    if args.phase in ("cold", "restart"):
        run = _cold if args.phase == "cold" else _restart
        print(json.dumps(asyncio.run(run(args.bootstrap, args.topic, args.state_dir))))
        return 0

    sizes = sorted({int(s) for s in args.sizes.split(",") if s} or {args.count // 4, args.count // 2, args.count})
    print(f"DNC registry benchmark: sizes {', '.join(f'{s:,}' for s in sizes)}; density {args.density:.0%}", flush=True)
    benchlib.print_machine()
    rows = []
    print("count | B/number RSS | raw rec/s | cold rec/s | cold s | snapshot MB | write s | restore s | "
          "restart s | ratio", flush=True)
    for size in sizes:
        row = measure(args.bootstrap, size, args.density)
        rows.append(row)
        print(f"{row['count']:,} | {row['bytes_per_number']:.2f} | {row['raw_rate']:,.0f} | {row['cold_rate']:,.0f} | "
              f"{row['cold_s']:.1f} | {row['snapshot_bytes'] / 1e6:.1f} | {row['snapshot_write_s']:.2f} | "
              f"{row['restore_s']:.2f} | {row['restart_s']:.2f} | {row['restart_s'] / row['cold_s']:.3f} "
              f"(produced in {row['produced_s']:.0f}s; tail {row['tail_records']})", flush=True)
    last = rows[-1]
    if last["count"] < REGISTRY and len(rows) >= 3:
        at = {key: fit([(r["count"], r[key]) for r in rows], REGISTRY)
              for key in ("restart_s", "cold_s", "restore_s", "snapshot_bytes", "snapshot_write_s")}
        print(f"projected to {REGISTRY:,} (least squares over {len(rows)} sizes): restart-to-ready with a snapshot "
              f"{at['restart_s']:.1f}s, without {at['cold_s']:.0f}s; restore {at['restore_s']:.1f}s; snapshot "
              f"{at['snapshot_bytes'] / 1e6:.0f} MB written in {at['snapshot_write_s']:.1f}s", flush=True)
    print(f"dnc-registry: count={last['count']} bytes_per_number={last['bytes_per_number']:.2f} "
          f"cold_rate={last['cold_rate']:.0f} restore_s={last['restore_s']:.2f} "
          f"restart_ratio={last['restart_s'] / last['cold_s']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
