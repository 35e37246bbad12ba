"""``cxone-connector demo``: the whole flow locally, end to end, with a summary.

One process: the CXone simulator (v2 or call-lists) on a free port, sample CRM and DNC
events on fresh topics of the local broker, and the connector itself until every job has
ended and every record is settled. It then reads the output topics back and prints what
happened, and whether the simulator's list equals the expected compliant set.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connector.cli.produce_sample import BulkProducer, default_bootstrap
from connector.cli.sample_data import SampleData, SampleSpec, generate
from connector.config import Settings, load_settings
from connector.kafka.client_config import LIBRDKAFKA_LOGGER, with_logger
from connector.ops import logs
from connector.serde.codec import AvroCodec

# The simulator's documented demo credentials; passed as env: references like real ones.
_DEMO_CLIENT_SECRET = "connector-secret"  # noqa: S105
_DEMO_WEBHOOK_SECRET = "demo-webhook-secret"  # noqa: S105 - signs the demo's own webhook only


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run everything locally, end to end",
        description="Start the CXone simulator, produce sample CRM and DNC events to fresh topics "
        "on the local broker, run the connector until every job has ended, and print a summary. "
        "Needs a broker (make demo starts one).",
    )
    p.add_argument("--bootstrap-servers", default=default_bootstrap(), help="Kafka bootstrap servers")
    p.add_argument("--profile", choices=("v2", "call-lists"), default="v2", help="CXone API profile")
    p.add_argument("--events", type=int, default=5000, help="CRM events to produce (default 5000)")
    p.add_argument("--contacts", type=int, default=2000, help="distinct contacts (default 2000)")
    p.add_argument("--seed", type=int, default=7, help="sample seed (default 7)")
    p.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds")
    p.add_argument("--metrics-port", type=int, default=9400, help="metrics port (0 picks a free one)")
    p.add_argument("--keep-topics", action="store_true",
                   help="keep the demo's demo.<run>.* topics for inspection (default: deleted at the end)")
    p.add_argument("--keep-running", action="store_true",
                   help="after the summary, keep the connector and simulator up until Ctrl-C")
    p.add_argument("--faults", action="store_true",
                   help="turn on simulator faults: 429s without Retry-After, 10%% 5xx, 10%% failed jobs")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    logs.configure(os.environ.get("CXONE_DEMO_LOG_LEVEL", "WARNING"))
    try:
        return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        return 130


def _topics(run: str) -> dict[str, str]:
    return {
        "contacts": f"demo.{run}.crm.contacts.optin",
        "dnc": f"demo.{run}.dnc.numbers",
        "job_events": f"demo.{run}.cxone.job-events",
        "callback_results": f"demo.{run}.cxone.callback-results",
        "suppressed": f"demo.{run}.crm.contacts.suppressed",
        "dlq": f"demo.{run}.crm.contacts.dlq",
    }


def _create_topics(bootstrap: str, topics: dict[str, str]) -> None:
    admin = AdminClient(with_logger({"bootstrap.servers": bootstrap}))
    new = [
        NewTopic(name, num_partitions=3 if role == "contacts" else 1, replication_factor=1,
                 config={"cleanup.policy": "compact"} if role == "dnc" else {})
        for role, name in topics.items()
    ]
    for fut in admin.create_topics(new, operation_timeout=30).values():
        fut.result(timeout=30)


def _delete_topics(bootstrap: str, topics: dict[str, str]) -> None:
    """Delete the run's topics (best effort: a broker that went away leaves them for later)."""
    admin = AdminClient(with_logger({"bootstrap.servers": bootstrap}))
    for name, fut in admin.delete_topics(list(topics.values()), operation_timeout=30).items():
        try:
            fut.result(timeout=30)
        except KafkaException as exc:
            print(f"  could not delete topic {name}: {exc}")


def _produce(bootstrap: str, topics: dict[str, str], data: SampleData) -> None:
    producer = BulkProducer(bootstrap)
    events, dnc = AvroCodec("ContactOptInChanged"), AvroCodec("DncEntry")
    for rec in data.dnc:
        value = None if rec.value is None else dnc.encode(rec.value)
        producer.produce(topics["dnc"], rec.key.encode(), value)
    for rec in data.events:
        assert rec.value is not None  # noqa: S101 - CRM events are never tombstones
        producer.produce(topics["contacts"], rec.key.encode(), events.encode(rec.value))
    if producer.flush(60.0) or producer.failed:
        raise RuntimeError(f"sample events were not all delivered: {producer.first_error}")


def _settings(args: argparse.Namespace, run: str, topics: dict[str, str], sim_url: str) -> Settings:
    env = dict(os.environ)
    env.update(DEMO_CXONE_SECRET=_DEMO_CLIENT_SECRET, DEMO_WEBHOOK_SECRET=_DEMO_WEBHOOK_SECRET)
    cxone: dict[str, Any] = {"profile": args.profile, "max_in_flight": 4, "backoff_initial_s": 0.2,
                             "backoff_max_s": 5.0}
    cxone["client_secret"] = "env:DEMO_CXONE_SECRET"  # noqa: S105 - a reference, not a secret
    if args.profile == "v2":
        cxone["base_url"] = sim_url
    else:
        # opt-outs after delivery go to a CXone DNC group (docs/architecture.md)
        cxone.update(auth_base_url=sim_url, access_key_id="ak-id", dnc_group_id="crm-opt-outs")
        cxone["access_key_secret"] = "env:DEMO_ACCESS_KEY"  # noqa: S105 - a reference
        env["DEMO_ACCESS_KEY"] = "ak-secret"
    data = {
        "kafka": {"bootstrap_servers": args.bootstrap_servers, "group_id": f"demo-{run}",
                  "statistics_interval_ms": 1000},
        "topics": topics,
        "window": {"max_items": 1000, "max_age_s": 1.0},
        "cxone": cxone,
        "monitor": {"poll_interval_s": 0.5},
        "callbacks": {"urls": [f"{sim_url}/_sim/webhooks/demo"], "secret": "env:DEMO_WEBHOOK_SECRET",
                      "backoff_initial_s": 0.2},
        "server": {"host": "127.0.0.1", "port": args.metrics_port},
        "shutdown_deadline_s": 20.0,
    }
    return load_settings(data, env)


def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER,
                         "group.id": f"demo-reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Any] = []
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is None:
                    out.append(msg)
                    if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                        left.discard(msg.partition())
        return out
    finally:
        consumer.close()


async def _demo(args: argparse.Namespace) -> int:
    from connector.app import App
    from connector.simulator import Simulator, SimulatorConfig

    run = uuid.uuid4().hex[:8]  # no long digit runs: logs mask those as phone numbers
    topics = _topics(run)
    print(f"demo {run}: broker {args.bootstrap_servers}, profile {args.profile}")
    _create_topics(args.bootstrap_servers, topics)
    spec = SampleSpec(count=args.events, contacts=args.contacts, extra_dnc=500, seed=args.seed,
                      start_ms=int(time.time() * 1000))
    data = generate(spec)
    _produce(args.bootstrap_servers, topics, data)
    expected = data.compliant_contacts
    print(f"  produced {len(data.events)} CRM events over {args.contacts} contacts and "
          f"{len(data.dnc)} DNC entries; {len(expected)} contacts should reach CXone")

    sim_cfg = SimulatorConfig()
    if args.faults:
        sim_cfg = SimulatorConfig.from_mapping({"faults": {
            "seed": args.seed,
            "rate_limit": {"enabled": True, "requests_per_second": 5, "burst": 5, "retry_after": False},
            "errors": {"rate": 0.1},
            "jobs": {"failed_fraction": 0.1},
        }})
    async with Simulator(sim_cfg) as sim:
        settings = _settings(args, run, topics, sim.url)
        app = App(settings)
        runner = asyncio.create_task(app.run())
        started = time.monotonic()
        print(f"  simulator at {sim.url}; connector metrics at "
              f"http://127.0.0.1:{settings.server.port or '<port>'}/metrics")
        done = False
        while time.monotonic() - started < args.timeout and not runner.done():
            await asyncio.sleep(0.5)
            stats = app.ingest.stats
            if (stats.consumed >= len(data.events) and app.ingest.tracker.unsettled == 0
                    and app.delivery.in_flight == 0):
                done = True
                break
        elapsed = time.monotonic() - started
        if args.keep_running and done:
            print(f"  all settled; metrics stay at http://127.0.0.1:{app.server.port}/metrics until Ctrl-C")
            with _suppress_cancel():
                await asyncio.Event().wait()
        app.request_stop()
        code = await runner
        # what a dialler would call: the list minus the numbers in CXone DNC groups
        contacts = {k: c for list_id in sim.state.lists for k, c in sim.state.dialable(list_id).items()}
        jobs = collections.Counter(job.status for job in sim.state.jobs.values())
        webhooks = sum(len(v) for v in sim.state.webhooks.values())
        stats = app.ingest.stats
    print(_summary(args, data, topics, contacts, jobs, webhooks, stats, elapsed, done))
    landed = _landed_contact_ids(data, contacts)
    verdict = check_landed(data, landed, exact=args.profile == "call-lists")
    print(f"\nresult: {'OK' if done and code == 0 and verdict.ok else 'MISMATCH'} - {verdict.text}")
    if args.keep_topics:
        print(f"topics kept for inspection: demo.{run}.*")
    else:
        _delete_topics(args.bootstrap_servers, topics)
        print(f"topics demo.{run}.* deleted (--keep-topics keeps them)")
    ok = done and code == 0 and verdict.ok
    return 0 if ok else 1


class _suppress_cancel:  # noqa: N801 - used as a context manager name
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] in (asyncio.CancelledError, KeyboardInterrupt)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str


def check_landed(data: SampleData, landed: set[str], *, exact: bool) -> Verdict:
    """Compare the contacts that reached the CXone list with the expected outcome.

    Every contact whose final state is compliant must be there, and nothing on the DNC
    list or with an invalid number may be. A contact whose opt-in was delivered before a
    later opt-out stays dialable with ``v2``, which has no removal (docs/architecture.md);
    such contacts are reported, not failed. With ``call-lists`` they go to a DNC group, so
    ``exact`` demands the dialable set equal the expected one.
    """
    expected = set(data.compliant_contacts)
    missing = expected - landed
    extra = landed - expected
    forbidden = {c for c in extra
                 if data.expected[c].on_dnc or data.expected[c].e164 is None}
    opted_out_later = extra - forbidden
    ok = not missing and not forbidden and not (exact and opted_out_later)
    text = (f"{len(landed & expected)} of {len(expected)} compliant contacts on the list, "
            f"{len(missing)} missing, {len(forbidden)} on DNC or invalid (must be 0), "
            f"{len(opted_out_later)} opted out after their opt-in was delivered")
    return Verdict(ok, text)


def _landed_contact_ids(data: SampleData, contacts: dict[str, dict[str, Any]]) -> set[str]:
    by_phone = {c.e164.lstrip("+"): c.contact_id for c in data.expected.values() if c.e164}
    landed: set[str] = set()
    for key in contacts:  # keyed by phone: E.164 (v2) or digits only (call-lists)
        phone = key.lstrip("+")
        if phone in by_phone:
            landed.add(by_phone[phone])
    return landed


def _counts(counter: collections.Counter[Any]) -> str:
    items = sorted(counter.items())
    return ", ".join(f"{'/'.join(k) if isinstance(k, tuple) else k}: {n}" for k, n in items) or "none"


def _summary(args: argparse.Namespace, data: SampleData, topics: dict[str, str],
             contacts: dict[str, Any], jobs: collections.Counter[Any], webhooks: int,
             stats: Any, elapsed: float, done: bool) -> str:
    bootstrap = args.bootstrap_servers
    audit = AvroCodec("SuppressedContact")
    suppressed = collections.Counter(
        (r["reason"], r.get("list_name") or "-")
        for r in (audit.decode(m.value()) for m in _read_all(bootstrap, topics["suppressed"]))
    )
    dlq = collections.Counter(
        (dict(m.headers() or []).get("__connect.errors.stage", b"?").decode(),
         dict(m.headers() or []).get("__connect.errors.exception.class.name", b"?").decode())
        for m in _read_all(bootstrap, topics["dlq"])
    )
    job_events = collections.Counter(
        AvroCodec("JobEvent").decode(m.value())["status"] for m in _read_all(bootstrap, topics["job_events"])
    )
    callbacks = collections.Counter(
        AvroCodec("CallbackResult").decode(m.value())["outcome"]
        for m in _read_all(bootstrap, topics["callback_results"])
    )
    lines = [
        "",
        f"summary ({'all settled' if done else 'TIMED OUT'} after {elapsed:.1f}s)",
        f"  events read            {stats.consumed}",
        f"  decoded                {stats.decoded}",
        "  suppressed (audit)     " + _counts(suppressed),
        "  dead-lettered          " + _counts(dlq),
        f"  batches                {stats.batches}",
        "  jobs (simulator)       " + ", ".join(f"{s}: {n}" for s, n in sorted(jobs.items())),
        "  job events (topic)     " + ", ".join(f"{s}: {n}" for s, n in sorted(job_events.items())),
        f"  dialable CXone contacts {len(contacts)}",
        f"  webhook deliveries     {webhooks} received; results on topic: "
        + (", ".join(f"{o}: {n}" for o, n in sorted(callbacks.items())) or "none"),
        "  metrics                served on the metrics port while the connector ran "
        "(--keep-running keeps them up); Grafana: docker compose up (deploy/grafana)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_run(argparse.Namespace()))
