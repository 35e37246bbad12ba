"""What the ingest core decided, written to Kafka: dead letters and audit records.

Each written record settles the records it covers in the core, once the broker acknowledged
it (settlement before commit). A record the broker refused for good stops the pipeline
(``on_failure``): nothing is committed past it. An opt-out's audit record goes with its DNC
record (``dnc.publish_opt_outs``, keyed by list and number) and its CXone DNC-group push
(``retract``); the opt-out settles once all of them are acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from connector.config import DncSettings, TopicSettings
from connector.core.dnc_keys import dnc_key
from connector.core.ingest import Audit, DeadLetter, Effects, IngestCore
from connector.core.models import Batch, SourceRef
from connector.kafka.dlq_writer import DeadLetterWriter
from connector.kafka.producer import AsyncProducer, Record
from connector.ops.metrics import DLQ_STAGES, INVALID_REASONS, Metrics
from connector.serde.codec import AvroCodec


class Retractions(Protocol):
    """Opt-outs carried to CXone (``connector.pipeline.dnc_group.DncGroupPusher``)."""

    def push(self, e164: str) -> asyncio.Future[None]:
        """Block ``e164`` on the CXone side; resolves once acknowledged."""
        ...

    def release(self, numbers: Iterable[str]) -> int:
        """Unblock ``numbers`` this instance blocked (they opted in again)."""
        ...


@dataclass
class IngestStats:
    """Counters since start (tests and benchmarks read them; the metrics say the same)."""

    consumed: int = 0
    decoded: int = 0
    dead_lettered: int = 0
    audited: int = 0
    opt_outs_published: int = 0
    batches: int = 0
    commits: int = 0



class EffectWriter:
    """Writes dead letters and audit records and settles what they cover once acknowledged.

    Args:
        topics: where audit, DLQ and DNC records go.
        dnc: whether and under which list CRM opt-outs are published to the DNC topic.
        producer: a started producer (not closed here).
        core: where acknowledged records are settled.
        metrics: the invalid, dead-lettered and suppressed families.
        stats: the counters tests and benchmarks read.
        retract: CXone-side opt-outs, or None.
        on_failure: called with the error and the stage (``publish``) when a record is refused
            for good.
    """

    def __init__(self, topics: TopicSettings, dnc: DncSettings, producer: AsyncProducer, core: IngestCore, *,
                 metrics: Metrics, stats: IngestStats, retract: Retractions | None,
                 on_failure: Callable[[BaseException, str], None]) -> None:
        self._topics, self._dnc = topics, dnc
        self._producer = producer
        self._core = core
        self._metrics = metrics
        self._stats = stats
        self._retract = retract
        self._on_failure = on_failure
        self._dead_letters = DeadLetterWriter(producer, topics.dlq)
        self._audit_codec = AvroCodec("SuppressedContact")
        self._dnc_codec = AvroCodec("DncEntry")
        self._invalid = {r: metrics.invalid.labels(reason=r) for r in INVALID_REASONS}
        self._dead_lettered = {s: metrics.dead_lettered.labels(stage=s) for s in DLQ_STAGES}

    def write(self, effects: Effects) -> None:
        """Write one core call's dead letters and audit records, and pass on its releases."""
        for dead in effects.dead_letters:
            self._send_dead_letter(dead)
        if self._retract is not None and effects.releases:
            self._retract.release(effects.releases)
        if effects.audits:
            self._settle_when_acked(self.audit(effects.audits), [r for a in effects.audits for r in a.covered])

    def audit(self, audits: Sequence[Audit]) -> list[asyncio.Future[None]]:
        """Write audit records (and each opt-out's DNC record or CXone push) as one group.

        Returns:
            The futures that must all resolve before the audited records settle.

        Raises:
            connector.kafka.exceptions.ProduceError: the producer refuses records (closed, or
                a latched failure).
        """
        topics, dnc = self._topics, self._dnc
        encode, encode_dnc = self._audit_codec.encode, self._dnc_codec.encode
        checked_at = int(time.time() * 1000)
        records: list[Record] = []
        futures: list[asyncio.Future[None]] = []
        counts: dict[tuple[str, str], int] = {}
        for audit in audits:
            event, source = audit.event, audit.event.source
            record = {  # no phone number on an output topic: the source record it names holds it
                "event_id": event.event_id, "contact_id": event.contact_id, "phone_e164": None,
                "reason": audit.reason, "list_name": audit.list_name, "check_stage": audit.stage,
                "checked_at": checked_at, "source_topic": source.topic, "source_partition": source.partition,
                "source_offset": source.offset,
            }
            # built field by field with the schema's types: no validation pass needed
            records.append((topics.suppressed, encode(record, check=False), event.contact_id.encode("utf-8")))
            if audit.opt_out:
                if dnc.publish_opt_outs:
                    entry = {"list_name": dnc.opt_out_list, "reason": "crm opt-out",
                             "added_at": event.changed_at_ms, "expires_at": None}
                    records.append((topics.dnc, encode_dnc(entry, check=False),
                                    dnc_key(dnc.opt_out_list, event.phone_e164)))
                    self._stats.opt_outs_published += 1
                if self._retract is not None:
                    futures.append(self._retract.push(event.phone_e164))
            counts[(audit.label, audit.list_name or "")] = counts.get((audit.label, audit.list_name or ""), 0) + 1
        futures.append(self._producer.produce_many_nowait(records))
        self._stats.audited += len(audits)
        for (label, list_label), n in counts.items():
            self._metrics.suppressed.labels(reason=label, list=list_label).inc(n)
        return futures

    async def dead_letter_batch(self, batch: Batch, *, stage: str, error_class: str, message: str) -> None:
        """Send each contact's original record to the DLQ and wait for the acks (the caller
        settles the batch).

        Raises:
            connector.kafka.exceptions.ProduceError: a dead letter was refused for good.
        """
        futures = []
        self._count_dead_letters(stage, len(batch.contacts))
        for contact in batch.contacts:
            self._stats.dead_lettered += 1
            futures.append(self._dead_letters.send_nowait(
                key=contact.key, value=contact.raw, headers=contact.headers,
                topic=contact.source.topic, partition=contact.source.partition,
                offset=contact.source.offset, stage=stage, error_class=error_class, message=message,
            ))
        await asyncio.gather(*futures)

    def _settle_when_acked(self, futures: list[asyncio.Future[None]], refs: Iterable[SourceRef]) -> None:
        """Settle ``refs`` once every future resolved; a refused record stops the pipeline."""
        covered = tuple(refs)
        remaining = len(futures)

        def done(fut: asyncio.Future[None]) -> None:
            nonlocal remaining
            if fut.cancelled() or fut.exception() is not None:
                self._on_failure(fut.exception() or asyncio.CancelledError(), "publish")
                return
            remaining -= 1
            if remaining == 0:
                self._core.settle(covered)

        for fut in futures:
            fut.add_done_callback(done)

    def _send_dead_letter(self, dead: DeadLetter) -> None:
        if dead.reason:
            child = self._invalid.get(dead.reason)
            # a reason outside INVALID_REASONS is counted as "other"
            (child if child is not None else self._metrics.invalid.labels(reason=dead.reason)).inc()
        self._count_dead_letters(dead.stage, 1)
        self._stats.dead_lettered += 1
        source = dead.source
        fut = self._dead_letters.send_nowait(
            key=dead.key, value=dead.value, headers=dead.headers, topic=source.topic, partition=source.partition,
            offset=source.offset, stage=dead.stage, error_class=dead.error_class, message=dead.message,
        )
        self._settle_when_acked([fut], dead.covered)

    def _count_dead_letters(self, stage: str, n: int) -> None:
        child = self._dead_lettered.get(stage)
        (child if child is not None else self._metrics.dead_lettered.labels(stage=stage)).inc(n)
