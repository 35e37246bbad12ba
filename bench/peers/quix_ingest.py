"""The peer of ``bench/bench_ingest.py``: the same ingest job written plainly with Quix Streams.

Runs in its own virtualenv (``bench/peers/setup.sh``: quixstreams, phonenumbers, fastavro),
so it imports nothing from the connector. The job, per CRM event:

- Avro decode (Quix's ``AvroDeserializer``, the same ``.avsc`` schema);
- phone to E.164 with phonenumbers (the region hint first, then the default region), behind
  an ``lru_cache`` as big as the connector's normaliser cache;
- invalid number → the DLQ topic; opt-out or DNC number → the suppressed topic;
- compliant opt-ins and opt-outs → a ``BatchingSink`` that keeps the last write per contact,
  checks the DNC set again and hands batches of at most ``--max-items`` to a no-op submit.

The DNC table is a Python ``set`` of E.164 strings read from the DNC topic before the app
starts (not timed). The rate is measured from the first event processed to the sink's last
write, like the connector's. Prints one JSON line with the figures.

Usage: ``.peers-venv/bin/python bench/peers/quix_ingest.py --bootstrap B --topic T ...``
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import phonenumbers
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from quixstreams import Application  # type: ignore[import-not-found]
from quixstreams.models.serializers.avro import AvroDeserializer  # type: ignore[import-not-found]
from quixstreams.sinks import BatchingSink, SinkBatch  # type: ignore[import-not-found]

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "ContactOptInChanged.avsc"


class InvalidPhone(ValueError):
    """The phone is not a valid number."""


def load_dnc(bootstrap: str, topic: str) -> set[str]:
    """Read the DNC topic from the beginning to its high watermarks into a set of E.164 strings."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"peer-dnc-{uuid.uuid4().hex}",
                         "enable.auto.commit": "false"})
    numbers: set[str] = set()
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        high = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
        pending = {p for p, h in high.items() if h > 0}
        while pending:
            for msg in consumer.consume(10_000, 0.5):
                if msg.error() is not None:
                    continue
                key = (msg.key() or b"").decode()
                if msg.value() is None:
                    numbers.discard(key)
                else:
                    numbers.add(key)
                partition, offset = msg.partition() or 0, msg.offset() or 0
                if offset + 1 >= high[partition]:
                    pending.discard(partition)
    finally:
        consumer.close()
    return numbers


def make_normaliser(default_region: str, cache_size: int) -> Any:
    @functools.lru_cache(maxsize=cache_size)
    def normalise(raw: str, hint: str | None) -> str:
        try:
            parsed = phonenumbers.parse(raw, hint or default_region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidPhone(str(exc)) from None
        if not phonenumbers.is_valid_number(parsed):
            raise InvalidPhone("not a valid number")
        return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))

    return normalise


class Counters:
    def __init__(self) -> None:
        self.processed = 0
        self.first = 0.0
        self.last_write = 0.0
        self.batches = 0
        self.contacts = 0
        self.suppressed_at_flush = 0


class CollectSink(BatchingSink):  # type: ignore[misc]
    """Last write per contact, DNC check again, batches of at most ``max_items`` to a no-op submit."""

    def __init__(self, dnc: set[str], max_items: int, counters: Counters, total: int, app: Any) -> None:
        super().__init__()
        self._dnc = dnc
        self._max_items = max_items
        self._counters = counters
        self._total = total
        self._app = app

    def submit(self, contacts: list[dict[str, Any]]) -> None:
        self._counters.batches += 1
        self._counters.contacts += len(contacts)

    def write(self, batch: SinkBatch) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for item in batch:
            latest[item.value["contact_id"]] = item.value
        ready: list[dict[str, Any]] = []
        for value in latest.values():
            if not value["opted_in"]:
                continue
            if value["e164"] in self._dnc:
                self._counters.suppressed_at_flush += 1
                continue
            ready.append(value)
            if len(ready) >= self._max_items:
                self.submit(ready)
                ready = []
        if ready:
            self.submit(ready)
        self._counters.last_write = time.perf_counter()
        if self._counters.processed >= self._total:
            self._app.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--dnc-topic", required=True)
    parser.add_argument("--dlq-topic", required=True)
    parser.add_argument("--suppressed-topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--region", default="US")
    parser.add_argument("--max-items", type=int, default=10_000)
    parser.add_argument("--cache-size", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    dnc = load_dnc(args.bootstrap, args.dnc_topic)
    dnc_s = time.perf_counter() - started

    counters = Counters()
    normalise = make_normaliser(args.region, args.cache_size)
    app = Application(
        broker_address=args.bootstrap, consumer_group=f"peer-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", commit_every=args.max_items, commit_interval=1.0,
        loglevel="WARNING", state_dir=tempfile.mkdtemp(prefix="quix-state-"), auto_create_topics=False,
    )
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    source = app.topic(args.topic, value_deserializer=AvroDeserializer(schema), key_deserializer="str")
    dlq = app.topic(args.dlq_topic, value_serializer="json", key_serializer="str")
    suppressed = app.topic(args.suppressed_topic, value_serializer="json", key_serializer="str")

    def classify(value: dict[str, Any]) -> dict[str, Any]:
        if counters.processed == 0:
            counters.first = time.perf_counter()
        counters.processed += 1
        out = {"contact_id": value["contact_id"], "event_id": value["event_id"],
               "opted_in": value["opted_in"], "first_name": value.get("first_name"),
               "last_name": value.get("last_name"), "email": value.get("email"),
               "custom_fields": value.get("custom_fields") or {}, "e164": None, "route": "send",
               "reason": None}
        try:
            out["e164"] = normalise(value["phone"], value.get("region_hint"))
        except InvalidPhone as exc:
            out["route"], out["reason"] = "dlq", str(exc)
            return out
        if not value["opted_in"]:
            out["route"], out["reason"] = "opt-out", "OPTED_OUT"
        elif out["e164"] in dnc:
            out["route"], out["reason"] = "suppressed", "DNC"
        return out

    sdf = app.dataframe(source).apply(classify)
    sdf[sdf["route"] == "dlq"].to_topic(dlq)
    sdf[(sdf["route"] == "suppressed") | (sdf["route"] == "opt-out")].to_topic(suppressed)
    sdf[(sdf["route"] == "send") | (sdf["route"] == "opt-out")].sink(
        CollectSink(dnc, args.max_items, counters, args.events, app))
    app.run()

    elapsed = counters.last_write - counters.first
    print(json.dumps({
        "events": counters.processed, "seconds": elapsed,
        "rate": counters.processed / elapsed if elapsed > 0 else 0.0,
        "batches": counters.batches, "contacts": counters.contacts,
        "suppressed_at_flush": counters.suppressed_at_flush,
        "dnc_numbers": len(dnc), "dnc_load_s": dnc_s,
    }), flush=True)
    return 0 if counters.processed >= args.events else 1


if __name__ == "__main__":
    sys.exit(main())
