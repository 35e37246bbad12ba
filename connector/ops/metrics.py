"""Prometheus metrics and the health state behind ``/healthz`` and ``/readyz``.

Every family is created by :class:`Metrics` on an injected ``CollectorRegistry`` (tests use a
private one), named ``cxone_connector_<subsystem>_<name>_<unit>``. Label values come only
from the bounded sets below and every combination is created at construction, so each series
exists at zero before its first event (``rate()`` and alerts see the first increment). An
unexpected value is counted under ``"other"`` instead of creating a new series. No label ever
holds a phone number, contact id, job id or batch id.

Attributes of :class:`Metrics` (call ``.inc()``, ``.set()``, ``.observe()`` on them; a
labelled one first needs ``.labels(...)`` with every label, by keyword):

Events (subsystem ``events``)
    ``events_consumed``  Counter ``cxone_connector_events_consumed_total``: records polled from
        the contacts topic. ``metrics.events_consumed.inc(n)``.
    ``events_decoded``  Counter ``cxone_connector_events_decoded_total``: records decoded and
        normalised to E.164.
    ``invalid``  Counter ``cxone_connector_events_invalid_total{reason}``; reason in
        :data:`INVALID_REASONS` (``decode`` for Avro/framing errors, else
        ``PhoneError.reason``). ``metrics.invalid.labels(reason=err.reason).inc()``.
    ``suppressed``  Counter ``cxone_connector_events_suppressed_total{reason, list}``; reason
        in :data:`SUPPRESSION_REASONS` (closed-set values are lower-cased, so the audit
        reasons ``"DNC"``/``"OPTED_OUT"`` fit as they are); ``list`` is the DNC list name. List names are
        operator-defined, so the label admits the first :data:`MAX_DNC_LISTS` distinct names
        seen (or declared with :meth:`Metrics.declare_dnc_lists`) and counts any later one
        as ``"other"``; an empty name is ``"none"``.
        ``metrics.suppressed.labels(reason="dnc", list=entry.list_name).inc()``.
    ``dead_lettered``  Counter ``cxone_connector_events_dead_lettered_total{stage}``; stage
        in :data:`DLQ_STAGES`.
    ``time_zone_source``  Counter ``cxone_connector_events_time_zone_source_total{source}``: where
        each opt-in's calling-hours time zone came from; source in :data:`TIME_ZONE_SOURCES`
        (``unknown``: none was found). :meth:`Metrics.count_time_zone_sources` adds one core
        call's counts (``connector.core.ingest.Effects.time_zone_sources``).

DNC table (subsystem ``dnc``)
    ``dnc_numbers``  Gauge ``cxone_connector_dnc_numbers``: numbers held.
    ``dnc_bootstrap_state``  Gauge ``cxone_connector_dnc_bootstrap_state{state}``: 1 for the
        current state in :data:`DNC_STATES`, else 0. Use :meth:`Metrics.set_dnc_state`.
    ``dnc_bootstrap_duration``  Gauge ``cxone_connector_dnc_bootstrap_duration_seconds``.
    ``dnc_updates``  Counter ``cxone_connector_dnc_updates_applied_total{op}``; op in
        :data:`DNC_UPDATE_OPS`.
    ``dnc_lag``  Gauge ``cxone_connector_dnc_lag_messages``: records behind the DNC topic's
        end, summed over its partitions.
    ``dnc_list_ages``  :class:`DncListAgeCollector`: exports
        ``cxone_connector_dnc_list_age_seconds{list}``, the age of each list's registry copy
        (from its last ``dnc sync``), computed at scrape time; ``+Inf`` for a configured list
        without a readable refresh record. Fed by
        :class:`connector.kafka.dnc_refreshes.DncRefreshReader`.
    ``dnc_current``  Gauge ``cxone_connector_dnc_current``: 1 while the DNC table is current
        (its thread alive, caught up, every partition fetched within ``dnc.max_stall_s``).
    ``dnc_partitions``  Gauge ``cxone_connector_dnc_partitions``: partitions of the DNC topic
        followed.
    ``dnc_rejected``  Counter ``cxone_connector_dnc_records_rejected_total{reason}``; reason in
        :data:`DNC_REJECT_REASONS` (a key naming no number, or ``unreadable``: a value that could
        not be read, whose number is blocked under ``dnc.unreadable_list``).
    ``dnc_snapshot_writes``  Counter ``cxone_connector_dnc_snapshot_writes_total{outcome}``;
        outcome ``ok`` or ``error``.
    ``dnc_snapshot_last_write``  Gauge
        ``cxone_connector_dnc_snapshot_last_write_timestamp_seconds``: Unix time of the last
        snapshot written.
    ``dnc_snapshot_bytes``  Gauge ``cxone_connector_dnc_snapshot_size_bytes``.
    ``dnc_snapshot_write_duration``  Gauge
        ``cxone_connector_dnc_snapshot_write_duration_seconds``: how long the last write took.
    ``dnc_restore_duration``  Gauge ``cxone_connector_dnc_snapshot_restore_duration_seconds``:
        how long reading the snapshot took at start (0 when none was restored).
    ``dnc_rebuilds``  Counter ``cxone_connector_dnc_rebuilds_total{reason}``: starts that
        read the DNC topic from the beginning, and why (:data:`DNC_REBUILD_REASONS`).
    ``dnc_restored``  Gauge ``cxone_connector_dnc_snapshot_restored``: 1 when the table was
        started from a snapshot.

Batches (subsystem ``batches``)
    ``batches_flushed``  Counter ``cxone_connector_batches_flushed_total{reason}``; reason in
        :data:`FLUSH_REASONS` (``Batch.flush_reason``).
    ``batch_size``  Histogram ``cxone_connector_batches_size_items``: contacts per batch.
    ``batch_fill``  Histogram ``cxone_connector_batches_fill_ratio``: size / ``max_items``.
    ``batch_window_age``  Histogram ``cxone_connector_batches_window_age_seconds``: age of the
        oldest record in the window at flush.
    :meth:`Metrics.observe_flush` records all four at once.

CXone (subsystem ``cxone``)
    ``cxone_requests``  Counter ``cxone_connector_cxone_requests_total{endpoint,
        status_class}``; endpoint in :data:`CXONE_ENDPOINTS`, status class from
        :func:`status_class` (:data:`STATUS_CLASSES`; ``error`` = no HTTP response).
    ``cxone_rate_limited``  Counter ``cxone_connector_cxone_rate_limited_total{endpoint}``:
        429 responses.
    ``cxone_retries``  Counter ``cxone_connector_cxone_retries_total{endpoint, reason}``;
        reason in :data:`RETRY_REASONS`.
    ``cxone_request_duration``  Histogram
        ``cxone_connector_cxone_request_duration_seconds{endpoint}``.
    ``cxone_token_refreshes``  Counter ``cxone_connector_cxone_token_refreshes_total{outcome}``;
        outcome ``ok`` or ``error``.
    ``cxone_jobs_in_flight``  Gauge ``cxone_connector_cxone_jobs_in_flight``.
    ``cxone_job_duration``  Histogram ``cxone_connector_cxone_job_duration_seconds``: submit to
        terminal state.
    ``cxone_jobs``  Counter ``cxone_connector_cxone_jobs_total{outcome}``; outcome in
        :data:`JOB_OUTCOMES` (lower-case terminal status, or ``timed_out``).
    ``cxone_resubmissions``  Counter ``cxone_connector_cxone_job_resubmissions_total``.
    ``cxone_last_success``  Gauge ``cxone_connector_cxone_last_successful_submit_timestamp_seconds``:
        Unix time of the last accepted submission (``.set_to_current_time()``).

WebSocket (subsystem ``websocket``)
    ``ws_connected``  Gauge ``cxone_connector_websocket_connected`` (1 or 0).
    ``ws_reconnects``  Counter ``cxone_connector_websocket_reconnects_total``.
    ``ws_events``  Counter ``cxone_connector_websocket_events_received_total``.
    ``ws_polling_fallbacks``  Counter ``cxone_connector_websocket_polling_fallbacks_total``:
        times job monitoring fell back to REST polling.

Callbacks (subsystem ``callbacks``)
    ``callback_deliveries``  Counter ``cxone_connector_callbacks_deliveries_total{outcome}``;
        outcome in :data:`CALLBACK_OUTCOMES`.
    ``callback_attempts``  Counter ``cxone_connector_callbacks_attempts_total``: HTTP attempts.
    ``callback_duration``  Histogram ``cxone_connector_callbacks_duration_seconds``: first
        attempt to final outcome.

Kafka (subsystem ``kafka``)
    ``produce_errors``  Counter ``cxone_connector_kafka_produce_errors_total{topic}``; topic is
        the role (a :class:`connector.config.TopicSettings` field name, :data:`TOPIC_ROLES`),
        never the configured name.
    ``paused_partitions``  Gauge ``cxone_connector_kafka_paused_partitions``.
    ``commit_duration``  Histogram ``cxone_connector_kafka_commit_duration_seconds``: commit
        call to its ``on_commit`` callback.
    ``kafka_stats``  :class:`KafkaStatsCollector`; feed it librdkafka's ``stats_cb`` string:
        ``"stats_cb": lambda s: metrics.kafka_stats.update("contacts", s)``. It exports
        ``cxone_connector_kafka_consumer_lag_messages{client, topic, partition}`` and the
        families listed in its docstring.

End to end (subsystem ``pipeline``)
    ``end_to_end_latency``  Histogram ``cxone_connector_pipeline_end_to_end_latency_seconds``:
        CRM event produce time (record timestamp) to its job's completion.
    ``unsettled``  Gauge ``cxone_connector_pipeline_unsettled_records``: consumed records not
        yet settled (their offsets cannot be committed yet).

"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from connector.config import TopicSettings
from connector.core.time_zones import SOURCES as TIME_ZONE_SOURCES  # re-exported: the label's values
from connector.errors import ConnectorError

NAMESPACE = "cxone_connector"
OTHER = "other"

#: Why a record could not become a contact: ``decode`` (Avro or framing) or a
#: ``PhoneError.reason`` (see connector/core/phones.py).
INVALID_REASONS = ("decode", "validate", "empty", "unparseable", "not_possible", "invalid", "too_long")
#: Why a contact was not sent (the audit record's reason, lower-cased): on a DNC list when it
#: arrived (``dnc``) or when its batch was flushed (``dnc_at_flush``), opted out, a pending
#: opt-in cancelled by an opt-out, superseded by a later event of the same contact, or without
#: a time zone when ``calling_hours.unknown`` is ``refuse`` (``no_time_zone``).
SUPPRESSION_REASONS = ("dnc", "dnc_at_flush", "dnc_at_send", "opted_out", "cancelled_by_opt_out", "superseded",
                       "no_time_zone")
#: How many distinct DNC list names the ``list`` label admits before counting as ``other``.
MAX_DNC_LISTS = 20
#: Where a dead-lettered record failed (the ``__connect.errors.stage`` header).
DLQ_STAGES = ("decode", "normalise", "validate", "window", "submit", "job", "publish", "dnc")
DNC_STATES = ("pending", "loading", "ready", "failed")
DNC_UPDATE_OPS = ("upsert", "delete", "expire")
#: Why a DNC record was rejected (``connector.core.dnc_records.REJECT_REASONS``).
DNC_REJECT_REASONS = ("missing", "not_utf8", "bad_list", "not_a_number", "unreadable")
#: Why the DNC table was read from the beginning (``connector.core.dnc_snapshot``): no
#: snapshot (``none``, ``disabled``), or one that could not be trusted.
DNC_REBUILD_REASONS = (
    "disabled", "none", "unreadable", "truncated", "checksum", "format", "topic", "topic_id", "partitions",
    "offset_past_end", "offset_before_start", "too_old", "unverifiable",
)
SNAPSHOT_OUTCOMES = ("ok", "error")
FLUSH_REASONS = ("size", "bytes", "age", "shutdown")
#: CXone calls of both profiles.
CXONE_ENDPOINTS = (
    "token", "discovery", "bulk_insert", "job_status", "create_list", "upload", "cancel_job", "dnc_records",
)
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
RETRY_REASONS = ("rate_limited", "server_error", "io_error", "unauthorized")
TOKEN_OUTCOMES = ("ok", "error")
JOB_OUTCOMES = ("completed", "failed", "aborted", "timed_out")
CALLBACK_OUTCOMES = ("delivered", "rejected", "failed")
TOPIC_ROLES = tuple(f.name for f in fields(TopicSettings))
#: Long-lived tasks a supervisor restarts (``connector.ops.supervisor``).
SUPERVISED_TASKS = ("cxone-monitor-poll", "cxone-monitor-ws", "dnc-group-pusher", "cxone-token")
#: librdkafka clients the stats collector accepts (one stats stream each).
KAFKA_CLIENTS = ("contacts", "dnc", "producer")

_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 50_000, 100_000, 500_000)
_FILL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
_AGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_HTTP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_COMMIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
_E2E_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def status_class(status: int | None) -> str:
    """The ``status_class`` label for an HTTP status; ``None`` (no response) is ``error``."""
    if status is None or not 200 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


M = TypeVar("M", bound=MetricWrapperBase)

#: A label's allowed values: a closed set, or an int capping the distinct values admitted.
LabelSpec = Sequence[str] | int


class BoundedFamily(Generic[M]):
    """A labelled metric whose label values are confined to bounded sets.

    ``labels(**values)`` lower-cases a closed label's value (``"DNC"`` counts as ``"dnc"``)
    and maps a value outside its set to ``"other"``; an open label
    (given as a cap) admits the first ``cap`` distinct values and maps later ones to
    ``"other"``. Thread-safe.
    """

    def __init__(self, metric: M, specs: Mapping[str, LabelSpec]) -> None:
        self.metric = metric
        self.labelnames = tuple(specs)
        self._closed: dict[str, frozenset[str]] = {}
        self._caps: dict[str, int] = {}
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        for name, spec in specs.items():
            if isinstance(spec, int):
                self._caps[name] = spec
                self._seen[name] = set()
            else:
                self._closed[name] = frozenset(spec) | {OTHER}
        # Pre-initialise every closed combination; an open label starts with "other" only, so
        # the family is visible before the first value arrives.
        self._preinit({n: [OTHER] for n in self._caps})

    def _admit(self, name: str, value: str) -> tuple[str, bool]:
        """The label value to use, and whether it was just admitted to an open label."""
        if name in self._closed:
            value = value.lower()
            return (value if value in self._closed[name] else OTHER), False
        value = value or "none"
        seen = self._seen[name]
        with self._lock:
            if value in seen:
                return value, False
            if len(seen) < self._caps[name]:
                seen.add(value)
                return value, True
        return OTHER, False

    def labels(self, **values: str) -> M:
        """The child for these label values, each confined to its bounded set.

        Raises:
            ValueError: the label names are not exactly this family's.
        """
        if set(values) != set(self.labelnames):
            raise ValueError(f"expected labels {self.labelnames}, got {tuple(values)}")
        chosen: dict[str, str] = {}
        for n in self.labelnames:
            chosen[n], new = self._admit(n, str(values[n]))
            if new:  # a newly admitted open value gets its zero series for every other label
                self._preinit({n: [chosen[n]]})
        return self.metric.labels(**chosen)

    def declare(self, name: str, values: Iterable[str]) -> None:
        """Admit values of the open label ``name`` now and create their zero series.

        Raises:
            ValueError: ``name`` is not an open label of this family.
        """
        if name not in self._caps:
            raise ValueError(f"{name} is not an open label")
        self._preinit({name: sorted({self._admit(name, v)[0] for v in values})})

    def _preinit(self, open_values: Mapping[str, Sequence[str]]) -> None:
        axes = [sorted(self._closed[n]) if n in self._closed else open_values.get(n, [OTHER])
                for n in self.labelnames]
        for combo in itertools.product(*axes):
            self.metric.labels(**dict(zip(self.labelnames, combo, strict=True)))


class Metrics:
    """Every metric family of the connector, registered on ``registry``.

    See the module docstring for the attributes, their names and their labels.

    Args:
        registry: where to register; a fresh private ``CollectorRegistry`` when ``None``.
        max_dnc_lists: distinct DNC list names the ``suppressed`` ``list`` label admits.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, max_dnc_lists: int = MAX_DNC_LISTS
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        def counter(sub: str, name: str, doc: str) -> Counter:
            return Counter(documentation=doc, registry=r, namespace=NAMESPACE, subsystem=sub, name=name)

        def gauge(sub: str, name: str, doc: str, unit: str = "") -> Gauge:
            return Gauge(name, doc, namespace=NAMESPACE, subsystem=sub, unit=unit, registry=r)

        def hist(sub: str, name: str, doc: str, buckets: Sequence[float], unit: str = "") -> Histogram:
            return Histogram(name, doc, namespace=NAMESPACE, subsystem=sub, unit=unit, registry=r,
                             buckets=buckets)

        def labelled_counter(
            sub: str, name: str, doc: str, specs: Mapping[str, LabelSpec]
        ) -> BoundedFamily[Counter]:
            return BoundedFamily(Counter(documentation=doc, registry=r, labelnames=tuple(specs),
                                         namespace=NAMESPACE, subsystem=sub, name=name), specs)

        # events
        self.events_consumed = counter("events", "consumed", "Records polled from the contacts topic.")
        self.events_decoded = counter("events", "decoded", "Records decoded and normalised to E.164.")
        self.invalid = labelled_counter("events", "invalid", "Records that could not become a contact.",
                                        {"reason": INVALID_REASONS})
        self.suppressed = labelled_counter(
            "events", "suppressed", "Contacts not sent, by reason and DNC list.",
            {"reason": SUPPRESSION_REASONS, "list": max_dnc_lists},
        )
        self.dead_lettered = labelled_counter("events", "dead_lettered", "Records written to the DLQ.",
                                              {"stage": DLQ_STAGES})
        self.time_zone_source = labelled_counter(
            "events", "time_zone_source", "Opt-ins by where their calling-hours time zone came from.",
            {"source": TIME_ZONE_SOURCES})
        self.decode_retries = counter("events", "decode_retries",
                                      "Consumed lists decoded again because the schema registry was unreachable.")
        # DNC
        self.dnc_numbers = gauge("dnc", "numbers", "Numbers held in the DNC table.")
        self.dnc_bootstrap_state = BoundedFamily(
            Gauge(documentation="1 for the DNC table's current bootstrap state, else 0.", registry=r,
                  labelnames=("state",), namespace=NAMESPACE, subsystem="dnc", name="bootstrap_state"),
            {"state": DNC_STATES},
        )
        self.dnc_bootstrap_duration = gauge(
            "dnc", "bootstrap_duration", "Time the DNC bootstrap took.", unit="seconds")
        self.dnc_updates = labelled_counter("dnc", "updates_applied", "Live DNC updates applied.",
                                            {"op": DNC_UPDATE_OPS})
        self.dnc_lag = gauge("dnc", "lag", "Records behind the end of the DNC topic.", unit="messages")
        self.dnc_list_ages = DncListAgeCollector(max_lists=max_dnc_lists)
        r.register(self.dnc_list_ages)
        self.dnc_current = gauge("dnc", "current", "1 while the DNC table is current, else 0.")
        self.dnc_partitions = gauge("dnc", "partitions", "Partitions of the DNC topic followed.")
        self.dnc_rejected = labelled_counter("dnc", "records_rejected", "DNC records rejected, by reason.",
                                             {"reason": DNC_REJECT_REASONS})
        self.dnc_snapshot_writes = labelled_counter("dnc", "snapshot_writes", "DNC table snapshots written.",
                                                    {"outcome": SNAPSHOT_OUTCOMES})
        self.dnc_snapshot_last_write = gauge("dnc", "snapshot_last_write_timestamp",
                                             "Unix time of the last DNC snapshot written.", unit="seconds")
        self.dnc_snapshot_bytes = gauge("dnc", "snapshot_size", "Size of the last DNC snapshot.", unit="bytes")
        self.dnc_snapshot_write_duration = gauge("dnc", "snapshot_write_duration",
                                                 "How long the last DNC snapshot write took.", unit="seconds")
        self.dnc_restore_duration = gauge("dnc", "snapshot_restore_duration",
                                          "How long restoring the DNC snapshot took at start.", unit="seconds")
        self.dnc_rebuilds = labelled_counter("dnc", "rebuilds", "DNC table starts from the topic's beginning.",
                                             {"reason": DNC_REBUILD_REASONS})
        self.dnc_restored = gauge("dnc", "snapshot_restored", "1 when the DNC table started from a snapshot.")
        self.set_dnc_state("pending")
        # batches
        self.batches_flushed = labelled_counter("batches", "flushed", "Batches flushed, by reason.",
                                                {"reason": FLUSH_REASONS})
        self.batch_size = hist("batches", "size", "Contacts per flushed batch.", _SIZE_BUCKETS, unit="items")
        self.batch_fill = hist("batches", "fill", "Batch size over its maximum.", _FILL_BUCKETS, unit="ratio")
        self.batch_window_age = hist("batches", "window_age", "Age of the oldest record at flush.",
                                     _AGE_BUCKETS, unit="seconds")
        # CXone
        self.cxone_requests = labelled_counter(
            "cxone", "requests", "CXone HTTP requests by endpoint and status class.",
            {"endpoint": CXONE_ENDPOINTS, "status_class": STATUS_CLASSES},
        )
        self.cxone_rate_limited = labelled_counter("cxone", "rate_limited", "CXone 429 responses.",
                                                   {"endpoint": CXONE_ENDPOINTS})
        self.cxone_retries = labelled_counter("cxone", "retries", "CXone requests retried.",
                                              {"endpoint": CXONE_ENDPOINTS, "reason": RETRY_REASONS})
        self.cxone_request_duration = BoundedFamily(
            Histogram("request_duration", "CXone request latency.", labelnames=("endpoint",),
                      namespace=NAMESPACE, subsystem="cxone", unit="seconds", registry=r,
                      buckets=_HTTP_BUCKETS),
            {"endpoint": CXONE_ENDPOINTS},
        )
        self.cxone_token_refreshes = labelled_counter("cxone", "token_refreshes", "Access token fetches.",
                                                      {"outcome": TOKEN_OUTCOMES})
        self.cxone_jobs_in_flight = gauge("cxone", "jobs_in_flight", "Jobs submitted and not yet ended.")
        self.cxone_job_duration = hist("cxone", "job_duration", "Submit to terminal state.", _JOB_BUCKETS,
                                       unit="seconds")
        self.cxone_jobs = labelled_counter("cxone", "jobs", "Jobs ended, by outcome.",
                                           {"outcome": JOB_OUTCOMES})
        self.cxone_resubmissions = counter("cxone", "job_resubmissions",
                                           "Failed or aborted jobs resubmitted.")
        self.cxone_last_success = gauge("cxone", "last_successful_submit_timestamp",
                                        "Unix time of the last accepted submission.", unit="seconds")
        # WebSocket
        self.ws_connected = gauge("websocket", "connected", "1 while the job-event socket is open.")
        self.ws_reconnects = counter("websocket", "reconnects", "Job-event socket reconnects.")
        self.ws_events = counter("websocket", "events_received", "Job events received on the socket.")
        self.ws_polling_fallbacks = counter("websocket", "polling_fallbacks",
                                            "Times job monitoring fell back to REST polling.")
        # callbacks
        self.callback_deliveries = labelled_counter(
            "callbacks", "deliveries", "Webhook deliveries by outcome.", {"outcome": CALLBACK_OUTCOMES})
        self.callback_attempts = counter("callbacks", "attempts", "Webhook HTTP attempts.")
        self.callback_duration = hist("callbacks", "duration", "First attempt to final outcome.",
                                      _HTTP_BUCKETS, unit="seconds")
        # Kafka
        self.produce_errors = labelled_counter("kafka", "produce_errors", "Produce failures, by topic role.",
                                               {"topic": TOPIC_ROLES})
        self.produce_retries = labelled_counter(
            "kafka", "produce_retries", "Records produced again after a retriable delivery failure, by topic role.",
            {"topic": TOPIC_ROLES})
        self.paused_partitions = gauge("kafka", "paused_partitions", "Partitions paused for backpressure.")
        self.commit_duration = hist("kafka", "commit_duration", "Offset commit to its acknowledgement.",
                                    _COMMIT_BUCKETS, unit="seconds")
        self.kafka_stats = KafkaStatsCollector()
        r.register(self.kafka_stats)
        # end to end
        self.end_to_end_latency = hist("pipeline", "end_to_end_latency",
                                       "CRM event produce time to job completion.", _E2E_BUCKETS,
                                       unit="seconds")
        self.unsettled = gauge("pipeline", "unsettled", "Consumed records not yet settled.", unit="records")
        self.send_gate_open = gauge("pipeline", "send_gate_open",
                                    "1 while batches may be sent (the DNC table is current and fresh), else 0.")
        self.task_restarts = BoundedFamily(
            Counter(documentation="Supervised tasks restarted after an unexpected failure.", registry=r,
                    labelnames=("task",), namespace=NAMESPACE, subsystem="pipeline", name="task_restarts"),
            {"task": SUPERVISED_TASKS})

    def set_dnc_state(self, state: str) -> None:
        """Mark ``state`` (one of :data:`DNC_STATES`) as the DNC table's current one.

        Raises:
            ValueError: ``state`` is not one of :data:`DNC_STATES`.
        """
        if state not in DNC_STATES:
            raise ValueError(f"unknown DNC state {state!r}")
        for s in DNC_STATES:
            self.dnc_bootstrap_state.labels(state=s).set(1 if s == state else 0)

    def declare_dnc_lists(self, names: Iterable[str]) -> None:
        """Create the zero ``suppressed`` series for these DNC list names (first come, capped)."""
        self.suppressed.declare("list", names)

    def count_time_zone_sources(self, counts: Mapping[str, int]) -> None:
        """Add the records of one core call to ``time_zone_source``, per source (``""`` skipped)."""
        for source, n in counts.items():
            if source and n:
                self.time_zone_source.labels(source=source).inc(n)

    def observe_flush(self, size: int, max_items: int, window_age_s: float, reason: str) -> None:
        """Record one flushed batch: its reason, size, fill and window age."""
        self.batches_flushed.labels(reason=reason).inc()
        self.batch_size.observe(size)
        self.batch_fill.observe(size / max_items if max_items > 0 else 0.0)
        self.batch_window_age.observe(window_age_s)


# --------------------------------------------------------------------------- librdkafka stats


class StatsError(ConnectorError):
    """A librdkafka statistics string that is not a JSON object."""


@dataclass(frozen=True)
class KafkaStats:
    """The figures taken from one librdkafka statistics JSON document.

    Attributes:
        client_type: ``consumer`` or ``producer`` (librdkafka's ``type``).
        lag: ``(topic, partition) -> consumer_lag`` for partitions with a known lag.
        uncommitted: ``(topic, partition) -> app_offset - committed_offset``: records handed
            to the application but not yet committed (settlement backlog).
        broker_rtt: ``broker -> (avg_s, p99_s)``; broker is the node id, or ``coordinator`` for
            the group coordinator connection, which carries OffsetCommit requests, so its
            round trip is what a commit costs on the wire.
        offset_commits: OffsetCommit requests sent to the coordinator, or ``None``.
        rebalances: the consumer group's rebalance count, or ``None``.
        assigned: partitions currently assigned, or ``None``.
        queued: messages waiting in the producer queue (``msg_cnt``), or ``None``.
        brokers_up: brokers (bootstrap or learned) whose connection is ``UP``, or ``None``
            when the document lists none.
    """

    client_type: str = ""
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    uncommitted: dict[tuple[str, int], int] = field(default_factory=dict)
    broker_rtt: dict[str, tuple[float, float]] = field(default_factory=dict)
    offset_commits: int | None = None
    rebalances: int | None = None
    assigned: int | None = None
    queued: int | None = None
    brokers_up: int | None = None


def _brokers_up(stats: dict[str, Any]) -> int | None:
    """Connections to real brokers that are ``UP`` (the logical coordinator one left out)."""
    brokers = [_dict(b) for b in _dict(stats.get("brokers")).values()]
    real = [b for b in brokers if b.get("source") in ("learned", "configured")]
    if not real:
        return None
    return sum(1 for b in real if b.get("state") == "UP")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _partitions(stats: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for topic_name, topic in _dict(stats.get("topics")).items():
        for pid, part in _dict(_dict(topic).get("partitions")).items():
            part = _dict(part)
            partition = _int(part.get("partition"))
            if partition is None:
                try:
                    partition = int(pid)
                except ValueError:
                    continue
            if partition < 0:  # -1 is librdkafka's internal "unassigned" partition
                continue
            yield str(topic_name), partition, part


def _broker_rtt(stats: dict[str, Any]) -> tuple[dict[str, tuple[float, float]], int | None]:
    rtt: dict[str, tuple[float, float]] = {}
    commits: int | None = None
    for name, broker in _dict(stats.get("brokers")).items():
        broker = _dict(broker)
        source = broker.get("source")
        if source == "logical":
            if not str(name).startswith("GroupCoordinator"):
                continue
            label = "coordinator"
            commits = _int(_dict(broker.get("req")).get("OffsetCommit"))
        else:
            nodeid = _int(broker.get("nodeid"))
            if source != "learned" or nodeid is None or nodeid < 0:
                continue  # bootstrap connections duplicate a learned broker
            label = str(nodeid)
        window = _dict(broker.get("rtt"))
        avg, p99, cnt = _num(window.get("avg")), _num(window.get("p99")), _int(window.get("cnt"))
        if avg is not None and p99 is not None and cnt:  # librdkafka reports microseconds
            rtt[label] = (avg / 1e6, p99 / 1e6)
    return rtt, commits


def parse_stats(stats_json: str | bytes) -> KafkaStats:
    """Extract lag, commit and latency figures from librdkafka's statistics JSON.

    Missing or mistyped fields are skipped, never guessed; partition ``-1`` and negative lags
    (unknown) are left out.

    Raises:
        StatsError: the text is not JSON, or not a JSON object.
    """
    try:
        stats = json.loads(stats_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StatsError(f"librdkafka statistics are not JSON: {exc}") from None
    if not isinstance(stats, dict):
        raise StatsError("librdkafka statistics are not a JSON object")
    lag: dict[tuple[str, int], int] = {}
    uncommitted: dict[tuple[str, int], int] = {}
    for topic, partition, part in _partitions(stats):
        value = _int(part.get("consumer_lag"))
        if value is not None and value >= 0:
            lag[(topic, partition)] = value
        app, committed = _int(part.get("app_offset")), _int(part.get("committed_offset"))
        if app is not None and committed is not None and app >= 0 and committed >= 0:
            uncommitted[(topic, partition)] = max(0, app - committed)
    rtt, commits = _broker_rtt(stats)
    cgrp = _dict(stats.get("cgrp"))
    client_type = stats.get("type")
    return KafkaStats(
        client_type=client_type if isinstance(client_type, str) else "",
        lag=lag,
        uncommitted=uncommitted,
        broker_rtt=rtt,
        offset_commits=commits,
        rebalances=_int(cgrp.get("rebalance_cnt")),
        assigned=_int(cgrp.get("assignment_size")),
        queued=_int(stats.get("msg_cnt")) if client_type == "producer" else None,
        brokers_up=_brokers_up(stats),
    )


_P = NAMESPACE + "_kafka_"


class KafkaStatsCollector:
    """A Prometheus collector exporting the latest librdkafka statistics of each client.

    Families (``client`` is one of :data:`KAFKA_CLIENTS`; topics and partitions are those the
    client reads, so the set is bounded by the topics' partition counts; ``broker`` by the
    cluster size):

    - ``cxone_connector_kafka_consumer_lag_messages{client, topic, partition}``
    - ``cxone_connector_kafka_uncommitted_messages{client, topic, partition}``
    - ``cxone_connector_kafka_broker_rtt_seconds{client, broker, stat}`` (stat ``avg``/``p99``;
      broker ``coordinator`` is the commit path)
    - ``cxone_connector_kafka_offset_commit_requests_total{client}``
    - ``cxone_connector_kafka_rebalances_total{client}``
    - ``cxone_connector_kafka_assigned_partitions{client}``
    - ``cxone_connector_kafka_producer_queue_messages{client}``
    - ``cxone_connector_kafka_stats_age_seconds{client}``
    - ``cxone_connector_kafka_stats_errors_total{client}``: statistics that could not be parsed.
    - ``cxone_connector_kafka_brokers_up{client}``: broker connections that are up.

    A client's figures disappear when its last statistics are older than ``max_age_s``
    (a closed client must not report a frozen lag).

    Args:
        max_age_s: how long a statistics snapshot stays valid.
        clock: monotonic clock, injectable for tests.
    """

    def __init__(self, max_age_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[float, KafkaStats]] = {}
        self._errors = dict.fromkeys(KAFKA_CLIENTS, 0)

    def update(self, client: str, stats_json: str | bytes) -> bool:
        """Take a new statistics document from ``client``'s ``stats_cb``.

        Never raises on bad statistics (it runs inside librdkafka's callback, where an
        exception would surface from ``poll()``); it counts them instead.

        Returns:
            True when the document was parsed and stored.

        Raises:
            ValueError: ``client`` is not one of :data:`KAFKA_CLIENTS` (a programming error).
        """
        if client not in KAFKA_CLIENTS:
            raise ValueError(f"unknown Kafka client {client!r}; expected one of {KAFKA_CLIENTS}")
        try:
            stats = parse_stats(stats_json)
        except StatsError:
            with self._lock:
                self._errors[client] += 1
            return False
        with self._lock:
            self._latest[client] = (self._clock(), stats)
        return True

    def snapshot(self, client: str) -> KafkaStats | None:
        """The latest still-valid statistics of ``client``, or ``None``."""
        with self._lock:
            entry = self._latest.get(client)
        if entry is None or self._clock() - entry[0] > self._max_age_s:
            return None
        return entry[1]

    def describe(self) -> Iterable[Metric]:
        """The family names, so registration works before any statistics arrive."""
        return self._families(include_samples=False)

    def collect(self) -> Iterable[Metric]:
        """The families with the latest figures of every client."""
        return self._families(include_samples=True)

    def _families(self, include_samples: bool) -> list[Metric]:
        c = ("client",)
        lag = GaugeMetricFamily(_P + "consumer_lag_messages", "Records behind the partition's end "
                                "(librdkafka consumer_lag).", labels=(*c, "topic", "partition"))
        unc = GaugeMetricFamily(_P + "uncommitted_messages", "Records handed to the application "
                                "and not yet committed.", labels=(*c, "topic", "partition"))
        rtt = GaugeMetricFamily(_P + "broker_rtt_seconds", "Broker round trip time; broker "
                                "'coordinator' carries offset commits.", labels=(*c, "broker", "stat"))
        commits = CounterMetricFamily(_P + "offset_commit_requests", "OffsetCommit requests sent.", labels=c)
        rebal = CounterMetricFamily(_P + "rebalances", "Consumer group rebalances.", labels=c)
        assigned = GaugeMetricFamily(_P + "assigned_partitions", "Partitions assigned.", labels=c)
        queued = GaugeMetricFamily(_P + "producer_queue_messages", "Messages waiting in the producer "
                                   "queue.", labels=c)
        age = GaugeMetricFamily(_P + "stats_age_seconds", "Age of the latest librdkafka statistics.",
                                labels=c)
        errors = CounterMetricFamily(_P + "stats_errors", "librdkafka statistics that could not be "
                                     "parsed.", labels=c)
        up = GaugeMetricFamily(_P + "brokers_up", "Broker connections that are up (0: Kafka cannot be "
                               "reached).", labels=c)
        out: list[Metric] = [lag, unc, rtt, commits, rebal, assigned, queued, age, errors, up]
        if not include_samples:
            return out
        now = self._clock()
        with self._lock:
            latest = dict(self._latest)
            errs = dict(self._errors)
        for client, n in errs.items():
            errors.add_metric([client], n)
        for client, (taken, stats) in sorted(latest.items()):
            if now - taken > self._max_age_s:
                continue
            age.add_metric([client], max(0.0, now - taken))
            for (topic, partition), value in sorted(stats.lag.items()):
                lag.add_metric([client, topic, str(partition)], value)
            for (topic, partition), value in sorted(stats.uncommitted.items()):
                unc.add_metric([client, topic, str(partition)], value)
            for broker, (avg, p99) in sorted(stats.broker_rtt.items()):
                rtt.add_metric([client, broker, "avg"], avg)
                rtt.add_metric([client, broker, "p99"], p99)
            if stats.offset_commits is not None:
                commits.add_metric([client], stats.offset_commits)
            if stats.rebalances is not None:
                rebal.add_metric([client], stats.rebalances)
            if stats.assigned is not None:
                assigned.add_metric([client], stats.assigned)
            if stats.queued is not None:
                queued.add_metric([client], stats.queued)
            if stats.brokers_up is not None:
                up.add_metric([client], stats.brokers_up)
        return out

    def unreachable(self) -> list[str]:
        """The clients whose latest statistics say no broker connection is up."""
        now = self._clock()
        with self._lock:
            latest = dict(self._latest)
        return sorted(client for client, (taken, stats) in latest.items()
                      if now - taken <= self._max_age_s and stats.brokers_up == 0)


# --------------------------------------------------------------------------- DNC list ages


class DncListAgeCollector:
    """``cxone_connector_dnc_list_age_seconds{list}``: how old each DNC list's registry copy is.

    The age is ``clock() - as_of`` at scrape time, where ``as_of`` is 00:00 UTC of the list's
    last ``dnc sync --as-of`` date, so the gauge grows by itself between syncs. A list known
    without a readable record (a configured one before its first sync, or one whose record
    is unreadable) reports ``+Inf``, so age alerts fire for it too (fail closed).

    The ``list`` label is bounded like the ``suppressed`` family's: declared (configured)
    lists first, then the first ``max_lists`` names in all; any later list is folded into
    ``list="other"``, which reports the oldest of them.

    Args:
        max_lists: distinct list names admitted as label values.
        clock: Unix time, injectable for tests.
    """

    def __init__(self, max_lists: int = MAX_DNC_LISTS, clock: Callable[[], float] = time.time) -> None:
        self._max = max_lists
        self._clock = clock
        self._lock = threading.Lock()
        self._as_of: dict[str, float | None] = {}  # admitted label -> as_of seconds, None: no record
        self._overflow: dict[str, float | None] = {}
        self._declared: set[str] = set()

    def _slot(self, name: str) -> dict[str, float | None]:
        if name in self._as_of or len(self._as_of) < self._max:
            return self._as_of
        return self._overflow

    def declare(self, names: Iterable[str]) -> None:
        """Admit the configured lists now; each reports ``+Inf`` until its record is read."""
        with self._lock:
            for name in names:
                self._declared.add(name)
                self._slot(name).setdefault(name, None)

    def set_as_of(self, name: str, as_of_s: float | None) -> None:
        """The list's registry access (Unix seconds of its ``as_of`` date), or None when it
        has no readable record."""
        with self._lock:
            self._slot(name)[name] = as_of_s

    def forget(self, name: str) -> None:
        """The list's record was deleted: a configured list reports ``+Inf``, any other list
        disappears (its label slot is freed)."""
        with self._lock:
            if name in self._declared:
                self._slot(name)[name] = None
            else:
                self._as_of.pop(name, None)
                self._overflow.pop(name, None)

    def describe(self) -> Iterable[Metric]:
        """The family, so registration works before any record arrives."""
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        """The family with every admitted list's age, and ``other`` for the rest."""
        family = self._family()
        now = self._clock()
        with self._lock:
            admitted = sorted(self._as_of.items())
            overflow = list(self._overflow.values())

        def age(as_of: float | None) -> float:
            return math.inf if as_of is None else max(0.0, now - as_of)

        for name, as_of in admitted:
            family.add_metric([name], age(as_of))
        if overflow:
            family.add_metric([OTHER], max(age(a) for a in overflow))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{NAMESPACE}_dnc_list_age_seconds",
                                 "Age of each DNC list's registry copy (since its last sync's as-of date).",
                                 labels=("list",))
