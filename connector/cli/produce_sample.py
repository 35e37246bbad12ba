"""``cxone-connector produce-sample``: synthetic CRM and DNC events.

The events come from :mod:`connector.cli.sample_data` (deterministic with ``--seed``).
DNC entries are produced first, so a connector started afterwards sees them in its
bootstrap, then the CRM events. DNC values are always schemaless Avro (what the DNC
bootstrap's fast path reads); ``--wire-format`` applies to the CRM events.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, Producer

from connector.cli.sample_data import KeyedRecord, SampleSpec, generate
from connector.errors import SerdeError
from connector.kafka.client_config import with_logger
from connector.serde.codec import AvroCodec, raw_schema

BOOTSTRAP_ENV = "CXONE_CONNECTOR__KAFKA__BOOTSTRAP_SERVERS"
REGISTRY_ENV = "CXONE_CONNECTOR__KAFKA__SCHEMA_REGISTRY_URL"


def default_bootstrap() -> str:
    """Bootstrap servers: the connector's override, ``KAFKA_BOOTSTRAP_SERVERS`` (as the local
    broker script and the tests honour it), else the local broker of ``deploy/local``."""
    return (os.environ.get(BOOTSTRAP_ENV) or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
            or f"127.0.0.1:{os.environ.get('CXONE_KAFKA_PORT', '9092')}")


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``-X key=value`` options into a librdkafka dict.

    Raises:
        ValueError: an item has no ``=``.
    """
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-X expects key=value, got {item.split('=')[0]!r}")
        out[key.strip()] = value
    return out


class BulkProducer:
    """A synchronous bulk producer for the CLI tools: batching, lz4, idempotent.

    Counts deliveries and failures through delivery callbacks; a full local queue is
    waited out rather than dropped.
    """

    def __init__(self, bootstrap: str, overrides: Mapping[str, str] | None = None) -> None:
        config: dict[str, str] = {
            "bootstrap.servers": bootstrap,
            "client.id": "cxone-connector-tools",
            "linger.ms": "50",
            "batch.size": "1000000",
            "compression.type": "lz4",
            "enable.idempotence": "true",
            "queue.buffering.max.messages": "200000",
        }
        config.update(overrides or {})
        self._producer = Producer(with_logger(config))
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = str(err)

    def produce(self, topic: str, key: bytes, value: bytes | None) -> None:
        """Queue one record, waiting while the local queue is full.

        Raises:
            confluent_kafka.KafkaException: the producer rejects the record outright
                (e.g. the message is larger than ``message.max.bytes``).
        """
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for every queued record; returns how many are still undelivered."""
        return int(self._producer.flush(timeout))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "produce-sample",
        help="produce synthetic CRM and DNC events",
        description="Produce synthetic CRM opt-in events and DNC entries (deterministic with --seed). "
        "DNC entries go first, then the CRM events. Prints a summary; exits 1 if any "
        "record could not be delivered.",
    )
    p.add_argument("--bootstrap-servers", default=default_bootstrap(),
                   help=f"Kafka bootstrap servers (default: ${BOOTSTRAP_ENV} or 127.0.0.1:9092)")
    p.add_argument("-X", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="extra librdkafka producer setting (TLS, SASL, ...); repeatable")
    p.add_argument("--topic", default="crm.contacts.optin", help="CRM events topic")
    p.add_argument("--dnc-topic", default="dnc.numbers", help="DNC topic (compacted)")
    p.add_argument("--count", type=int, default=1000, help="number of CRM events")
    p.add_argument("--contacts", type=int, default=250, help="number of distinct contacts")
    p.add_argument("--national-share", type=float, default=0.2, help="share of national-format numbers")
    p.add_argument("--messy-share", type=float, default=0.1, help="share of punctuated/messy numbers")
    p.add_argument("--invalid-share", type=float, default=0.01, help="share of contacts with invalid numbers")
    p.add_argument("--dnc-share", type=float, default=0.1,
                   help="share of distinct valid contact numbers also written to the DNC topic")
    p.add_argument("--opt-out-share", type=float, default=0.05, help="share of opt-out events")
    p.add_argument("--extra-dnc", type=int, default=0, metavar="N", help="unrelated numbers on the DNC topic")
    p.add_argument("--dnc-list", default="sample-dnc", help="list_name of the DNC entries")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")
    p.add_argument("--region", default="US", help="region of the generated numbers (US only)")
    p.add_argument("--start-ms", type=int, default=None,
                   help="changed_at of the first event, epoch ms (default: now)")
    p.add_argument("--wire-format", choices=("avro", "confluent"), default="avro",
                   help="CRM event encoding: schemaless Avro or Confluent framing")
    p.add_argument("--schema-id", type=int, default=None,
                   help="schema id for --wire-format confluent (else registered with the registry)")
    p.add_argument("--schema-registry-url", default=os.environ.get(REGISTRY_ENV, ""),
                   help=f"registry to register the schema with (default: ${REGISTRY_ENV})")
    p.add_argument("--expected-json", metavar="PATH",
                   help="write the expected outcome per contact (JSON) to PATH")
    p.set_defaults(func=_run)


def _event_codec(args: argparse.Namespace) -> AvroCodec:
    """The CRM event codec for the chosen wire format.

    Raises:
        SerdeError: confluent framing without a schema id or registry, or registering failed.
    """
    if args.wire_format == "avro":
        return AvroCodec("ContactOptInChanged")
    schema_id = args.schema_id
    if schema_id is None:
        if not args.schema_registry_url:
            raise SerdeError("--wire-format confluent needs --schema-id or --schema-registry-url")
        from connector.serde.registry import RegistryClient

        client = RegistryClient(args.schema_registry_url)
        schema_id = client.register(f"{args.topic}-value", raw_schema("ContactOptInChanged"))
    return AvroCodec("ContactOptInChanged", wire_format="confluent", schema_id=schema_id)


def _run(args: argparse.Namespace) -> int:
    spec = SampleSpec(
        count=args.count, contacts=args.contacts, national_share=args.national_share,
        messy_share=args.messy_share, invalid_share=args.invalid_share, dnc_share=args.dnc_share,
        opt_out_share=args.opt_out_share, extra_dnc=args.extra_dnc, seed=args.seed,
        region=args.region.upper(), dnc_list=args.dnc_list,
        start_ms=args.start_ms if args.start_ms is not None else int(time.time() * 1000),
    )
    try:
        overrides = parse_overrides(args.overrides)
        data = generate(spec)
        codec = _event_codec(args)
    except (ValueError, SerdeError) as exc:
        print(f"produce-sample: {exc}", file=sys.stderr)
        return 2
    dnc_codec = AvroCodec("DncEntry")
    producer = BulkProducer(args.bootstrap_servers, overrides)
    started = time.monotonic()
    _produce_all(producer, args.dnc_topic, data.dnc, dnc_codec.encode)
    _produce_all(producer, args.topic, data.events, codec.encode)
    left = producer.flush(120.0)
    elapsed = time.monotonic() - started
    if args.expected_json:
        _write_expected(args.expected_json, data.expected)
    total = len(data.dnc) + len(data.events)
    print(f"produce-sample: {len(data.events)} events to {args.topic} ({args.wire_format}), "
          f"{len(data.dnc)} DNC entries to {args.dnc_topic}, in {elapsed:.1f}s")
    for key, value in data.stats.items():
        print(f"  {key:22} {value}")
    if producer.failed or left:
        print(f"produce-sample: {producer.failed + left} of {total} records NOT delivered "
              f"(first error: {producer.first_error or 'flush timed out'})", file=sys.stderr)
        return 1
    return 0


def _produce_all(producer: BulkProducer, topic: str, records: Iterable[KeyedRecord],
                 encode: Callable[[Mapping[str, Any]], bytes]) -> None:
    for rec in records:
        value = None if rec.value is None else encode(rec.value)
        producer.produce(topic, rec.key.encode("utf-8"), value)


def _write_expected(path: str, expected: Mapping[str, Any]) -> None:
    rows = [
        {"contact_id": c.contact_id, "last_event_id": c.last_event_id, "opted_in": c.opted_in,
         "e164": c.e164, "on_dnc": c.on_dnc, "compliant": c.compliant}
        for c in expected.values()
    ]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=None)
