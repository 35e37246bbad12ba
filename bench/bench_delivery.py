"""CXone utilisation under a rate limit, and end-to-end latency, with the whole connector.

The CXone simulator runs in its own process (``cxone-connector simulate``, as CXone is
remote); the connector (:class:`connector.app.App`, profile ``v2``) runs in this one, on
topics of a unique prefix (deleted at the end).

(a) **Utilisation**: the simulator answers bulk inserts through a token bucket of
``--rps`` R requests per second (burst 1, ``Retry-After`` sent; other paths unlimited) and
the connector delivers a backlog of ``--backlog`` distinct compliant contacts. Figure:
contacts landed per second, from the first bulk insert to the last contact landed, divided
by R x 10,000 (the most the limit allows); and the share of bulk inserts answered 429 (the
simulator's request counts). Targets: >= 0.9 and < 5 %.

(b) **Latency**: the connector's ingest capacity is measured first on a backlog of the same
events (``IngestPipeline`` with a submit that settles at once); then a paced producer (its
own process) writes events at half that rate for ``--duration`` seconds while the connector
delivers them to an unlimited simulator. Figure: p50 / p99 from each event's produce time
(its Kafka timestamp) to the ``time`` of its job's COMPLETED event on ``cxone.job-events``
(matched through the event's source offset ranges), against window length + job time
(10,000 / the simulator's ``items_per_second``). Target: p99 <= window + job time + 1 s.

``--max-rps`` sets the connector's ``cxone.max_requests_per_second`` for (a) (default 0: no
configured rate, the pacer's AIMD alone).

Usage: ``python bench/bench_delivery.py [--rps R] [--max-rps M] [--backlog N] [--duration S] [--skip-latency]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import benchlib
from bench_ingest import Topics, run_ours
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from connector.app import App
from connector.config import Settings, load_settings
from connector.serde.codec import AvroCodec

TARGET_UTILISATION = 0.9
TARGET_429 = 0.05
BULK = "POST /api/v2/outbound/contactlistitems/bulkinsert"
BULK_PATH = "/api/v2/outbound/contactlistitems/bulkinsert"
ITEMS_PER_REQUEST = 10_000
SIM_SECRET = "connector-secret"  # noqa: S105 - the simulator's documented fake credential
SECRET_ENV = "BENCH_CXONE_SECRET"  # noqa: S105 - the name of a variable, not a secret


# ----------------------------------------------------------------------------- simulator


class SimulatorProcess:
    """``cxone-connector simulate`` in a child process, with its inspection API."""

    def __init__(self, rps: float | None, items_per_second: float) -> None:
        faults: str = ""
        if rps is not None:
            faults = (f'[faults]\npaths = ["{BULK_PATH}"]\n[faults.rate_limit]\nenabled = true\n'
                      f"requests_per_second = {rps}\nburst = 1\nretry_after = true\n")
        config = (f"[jobs]\nitems_per_second = {items_per_second}\n"
                  f"[limits]\ntenant_active_records = 100000000\n{faults}")
        self._file = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)  # noqa: SIM115
        self._file.write(config)
        self._file.close()
        exe = Path(sys.executable).with_name("cxone-connector")
        self.proc = subprocess.Popen(
            [str(exe), "simulate", "--config", self._file.name, "--port", "0", "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.url = line.strip().rsplit(" ", 1)[-1]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:  # noqa: S310 - 127.0.0.1
            return json.loads(resp.read())

    def landed(self) -> int:
        return sum(int(lst["contactCount"]) for lst in self.get("/_sim/lists")["lists"])

    def bulk_counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.get("/_sim/requests")["byEndpoint"].get(BULK, {})
        return counts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        with contextlib.suppress(OSError):
            os.unlink(self._file.name)


# ------------------------------------------------------------------------------ workload


def topics_for(prefix: str) -> dict[str, str]:
    return {
        "contacts": f"{prefix}.crm.contacts.optin", "dnc": f"{prefix}.dnc.numbers",
        "job_events": f"{prefix}.cxone.job-events", "callback_results": f"{prefix}.cxone.callback-results",
        "suppressed": f"{prefix}.crm.contacts.suppressed", "dlq": f"{prefix}.crm.contacts.dlq",
    }


def create(bootstrap: str, topics: dict[str, str], partitions: int) -> None:
    benchlib.create_topics(bootstrap, {
        name: (partitions if role == "contacts" else 1,
               {"cleanup.policy": "compact"} if role == "dnc" else {})
        for role, name in topics.items()
    })


def events(run: str, start: int, count: int) -> Iterator[tuple[bytes, bytes]]:
    """Distinct compliant contacts, each with its own valid US number in E.164."""
    encode = benchlib.avro_writer("ContactOptInChanged")
    now = int(time.time() * 1000)
    for i in range(start, start + count):
        # NPA 212..., exchanges 200-999, never 555: valid for phonenumbers.
        exchange = 200 + (i // 10_000) % 800
        exchange = 556 if exchange == 555 else exchange
        npa = (212, 213, 305, 312, 415, 617, 646, 713)[(i // 8_000_000) % 8]
        phone = f"+1{npa}{exchange:03d}{i % 10_000:04d}"
        contact = f"{run}-{i:09d}"
        yield contact.encode(), encode({
            "event_id": f"e-{contact}", "contact_id": contact, "phone": phone, "region_hint": None,
            "first_name": "Ada", "last_name": "Lovelace", "email": f"{contact}@example.com",
            "opted_in": True, "changed_at": now, "source": "bench", "custom_fields": {},
        })


def produce_backlog(bootstrap: str, topic: str, run: str, count: int) -> None:
    producer = benchlib.FastProducer(bootstrap)
    for key, value in events(run, 0, count):
        producer.produce(topic, key, value)
    producer.flush()


def produce_paced(bootstrap: str, topic: str, run: str, rate: float, duration: float) -> int:
    """Produce ``rate`` events per second for ``duration`` seconds, evenly; returns the count."""
    producer = benchlib.FastProducer(bootstrap, **{"linger.ms": "5"})
    total = int(rate * duration)
    source = events(run, 0, total)
    sent = 0
    started = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate))
        for _ in range(due - sent):
            key, value = next(source)
            producer.produce(topic, key, value)
        sent = max(sent, due)
        time.sleep(0.005)
    producer.flush()
    return sent


def app_settings(bootstrap: str, topics: dict[str, str], sim_url: str, *, statistics: bool = False,
                 max_rps: float = 0.0) -> Settings:
    env = {SECRET_ENV: SIM_SECRET}
    return load_settings({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"bench-delivery-{uuid.uuid4().hex[:8]}",
                  "statistics_interval_ms": 1000 if statistics else 0},
        "topics": topics,
        "cxone": {"base_url": sim_url, "client_secret": f"env:{SECRET_ENV}", "max_requests_per_second": max_rps},
        "server": {"host": "127.0.0.1", "port": 0},
        "logging": {"level": "WARNING"},
    }, env)


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every record of ``topic`` up to its current end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex}",
                         "enable.auto.commit": "false"})
    try:
        parts = consumer.list_topics(timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        left = {p for p, end in ends.items() if end > 0}
        out: list[Message] = []
        while left:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is None:
                    out.append(msg)
                    if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                        left.discard(msg.partition() or 0)
        return out
    finally:
        consumer.close()


# ---------------------------------------------------------------------------- utilisation


async def utilisation(bootstrap: str, rps: float, backlog: int, partitions: int, timeout: float,
                      max_rps: float = 0.0) -> bool:
    prefix = benchlib.unique_prefix("delivery-util")
    topics = topics_for(prefix)
    sim: SimulatorProcess | None = None
    try:
        create(bootstrap, topics, partitions)
        produce_backlog(bootstrap, topics["contacts"], prefix.rsplit(".", 1)[-1], backlog)
        sim = SimulatorProcess(rps, items_per_second=50_000)
        app = App(app_settings(bootstrap, topics, sim.url, max_rps=max_rps))
        runner = asyncio.create_task(app.run())
        first: float | None = None
        landed = 0
        deadline = time.monotonic() + timeout
        while landed < backlog and time.monotonic() < deadline and not runner.done():
            await asyncio.sleep(0.1)
            if first is None:
                seen: dict[str, int] = await asyncio.to_thread(sim.bulk_counts)
                first = time.perf_counter() if seen else None
            landed = await asyncio.to_thread(sim.landed)
        end = time.perf_counter()
        counts = await asyncio.to_thread(sim.bulk_counts)
        app.request_stop()
        await runner
    finally:
        if sim is not None:
            sim.stop()
        benchlib.delete_topics(bootstrap, topics.values())
    if first is None:
        raise RuntimeError("no bulk insert reached the simulator")
    seconds = end - first
    rate = landed / seconds
    ceiling = rps * ITEMS_PER_REQUEST
    total = sum(counts.values())
    limited = counts.get("429", 0)
    share = limited / total if total else 0.0
    ratio = rate / ceiling
    pacing = f"cxone.max_requests_per_second = {max_rps}" if max_rps > 0 else "no configured rate (AIMD alone)"
    print(f"utilisation: R = {rps} req/s (ceiling {ceiling:,.0f} contacts/s), {pacing}; "
          f"{landed:,} of {backlog:,} contacts landed in {seconds:.1f}s = {rate:,.0f} contacts/s")
    print(f"  bulk inserts: {total} requests, by status {dict(sorted(counts.items()))}")
    ok_u, ok_429 = ratio >= TARGET_UTILISATION, share < TARGET_429
    print(f"ratio delivered/ceiling: {ratio:5.2f}  (target >= {TARGET_UTILISATION}: {'met' if ok_u else 'MISSED'})")
    print(f"share answered 429:      {share:5.1%}  (target < {TARGET_429:.0%}: {'met' if ok_429 else 'MISSED'})",
          flush=True)
    return ok_u and ok_429 and landed == backlog


# ------------------------------------------------------------------------------- latency


async def capacity(bootstrap: str, count: int, partitions: int) -> float:
    """The ingest rate on a backlog of the latency workload's events (submit settles at once)."""
    prefix = benchlib.unique_prefix("delivery-cap")
    topics = Topics(f"{prefix}.crm.contacts.optin", f"{prefix}.dnc.numbers",
                    f"{prefix}.crm.contacts.suppressed", f"{prefix}.crm.contacts.dlq")
    try:
        benchlib.create_topics(bootstrap, {topics.contacts: (partitions, {}),
                                           topics.dnc: (1, {"cleanup.policy": "compact"}),
                                           topics.suppressed: (1, {}), topics.dlq: (1, {})})
        await asyncio.to_thread(produce_backlog, bootstrap, topics.contacts, prefix.rsplit(".", 1)[-1], count)
        result = await run_ours(bootstrap, topics, count)
    finally:
        benchlib.delete_topics(bootstrap, topics.names())
    return result.rate


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(bootstrap: str, rate: float, duration: float, partitions: int, items_per_second: float) -> bool:
    prefix = benchlib.unique_prefix("delivery-lat")
    topics = topics_for(prefix)
    sim: SimulatorProcess | None = None
    try:
        create(bootstrap, topics, partitions)
        sim = SimulatorProcess(None, items_per_second=items_per_second)
        settings = app_settings(bootstrap, topics, sim.url)
        app = App(settings)
        runner = asyncio.create_task(app.run())
        while not app.dnc.ready or not app.ingest.assigned:
            await asyncio.sleep(0.1)
        producer = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--produce-paced", topics["contacts"], "--bootstrap", bootstrap,
            "--rate", str(rate), "--duration", str(duration), stdout=asyncio.subprocess.PIPE)
        out, _ = await producer.communicate()
        total = int(out.decode().strip().splitlines()[-1])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not runner.done():
            if app.ingest.stats.consumed >= total and app.ingest.tracker.unsettled == 0:
                break
            await asyncio.sleep(0.2)
        app.request_stop()
        await runner
        produced = {(m.partition(), m.offset()): m.timestamp()[1]
                    for m in await asyncio.to_thread(read_topic, bootstrap, topics["contacts"])}
        job_events = await asyncio.to_thread(read_topic, bootstrap, topics["job_events"])
    finally:
        if sim is not None:
            sim.stop()
        benchlib.delete_topics(bootstrap, topics.values())
    codec = AvroCodec("JobEvent")
    latencies: list[float] = []
    for msg in job_events:
        value = msg.value()
        if value is None:
            continue
        event = codec.decode(value)
        if event["status"] != "COMPLETED":
            continue
        for rng in event["source_ranges"]:
            for offset in range(rng["first_offset"], rng["last_offset"] + 1):
                ts = produced.get((rng["partition"], offset))
                if ts is not None:
                    latencies.append((event["time"] - ts) / 1000.0)
    window = settings.window.max_age_s
    job_s = ITEMS_PER_REQUEST / items_per_second
    bound = window + job_s + 1.0
    if not latencies:
        raise RuntimeError("no COMPLETED job event matched a produced event")
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"latency at {rate:,.0f} events/s for {duration:.0f}s: {len(latencies):,} of {total:,} events "
          f"completed; p50 {p50:.2f}s, p99 {p99:.2f}s, max {max(latencies):.2f}s")
    ok = p99 <= bound
    print(f"  window {window:.1f}s + job time {job_s:.2f}s + 1s = {bound:.2f}s; ratio p99/bound {p99 / bound:.2f} "
          f"(target p99 <= bound: {'met' if ok else 'MISSED'})", flush=True)
    return ok and len(latencies) == total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rps", type=float, default=0.5, help="bulk inserts per second the simulator allows")
    parser.add_argument("--backlog", type=int, default=200_000, help="contacts to deliver for (a)")
    parser.add_argument("--max-rps", type=float, default=0.0,
                        help="the connector's cxone.max_requests_per_second for (a) (0: none, AIMD alone)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of paced producing for (b)")
    parser.add_argument("--capacity-events", type=int, default=100_000,
                        help="backlog measuring the ingest capacity for (b)")
    parser.add_argument("--items-per-second", type=float, default=50_000.0, help="simulator job speed")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on (a) after this long")
    parser.add_argument("--bootstrap", default=benchlib.DEFAULT_BOOTSTRAP)
    parser.add_argument("--skip-utilisation", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--produce-paced", metavar="TOPIC", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.produce_paced:
        print(produce_paced(args.bootstrap, args.produce_paced, uuid.uuid4().hex[:8], args.rate, args.duration))
        return 0

    logging.basicConfig(level=logging.WARNING)
    print("delivery benchmark (profile v2, simulator in its own process)", flush=True)
    benchlib.print_machine()
    ok = True
    if not args.skip_utilisation:
        ok &= asyncio.run(utilisation(args.bootstrap, args.rps, args.backlog, args.partitions, args.timeout,
                                      args.max_rps))
    if not args.skip_latency:
        cap = asyncio.run(capacity(args.bootstrap, args.capacity_events, args.partitions))
        print(f"ingest capacity (same events, submit settles at once): {cap:,.0f} events/s", flush=True)
        ok &= asyncio.run(latency(args.bootstrap, cap / 2, args.duration, args.partitions, args.items_per_second))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
