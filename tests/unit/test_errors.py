"""The one exception tree: every error says whether retrying may help, and retry code asks it.

Each class's default is pinned here, so a change of what is retried is a deliberate one. The
classes whose instances decide case by case (librdkafka's verdict, an HTTP status) are listed
with both answers they can give.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import connector
from connector.core.dnc_materialiser import TopicChangedError
from connector.core.dnc_snapshot import SnapshotError
from connector.cxone.exceptions import (
    AuthError,
    ClientError,
    CXoneError,
    DncRecordsError,
    HTTPStatusError,
    ProtocolError,
    RateLimitedError,
    RetriesExhaustedError,
    ServerError,
    TransportError,
)
from connector.errors import ConfigError, ConnectorError, PhoneError, SerdeError
from connector.kafka.exceptions import CommitError, ConsumeError, DncBootstrapError, KafkaError, ProduceError

#: class -> its default ``retriable``.
DEFAULTS: dict[type[ConnectorError], bool] = {
    ConnectorError: False, ConfigError: False, SerdeError: False, PhoneError: False,
    KafkaError: False, ProduceError: False, CommitError: False, ConsumeError: False, DncBootstrapError: False,
    CXoneError: False, TransportError: True, HTTPStatusError: False, RateLimitedError: True, ServerError: True,
    AuthError: False, ClientError: False, ProtocolError: False, DncRecordsError: False,
    RetriesExhaustedError: False, TopicChangedError: False, SnapshotError: False,
}


def _all_error_classes() -> set[type[ConnectorError]]:
    for module in pkgutil.walk_packages(connector.__path__, "connector."):
        if not module.name.startswith("connector.simulator"):
            importlib.import_module(module.name)
    found: set[type[ConnectorError]] = set()
    todo = [ConnectorError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {c for c in found if c.__module__.startswith("connector.") and not c.__module__.startswith(
        "connector.simulator") and not c.__name__.startswith("_")}


@pytest.mark.parametrize("cls", sorted(DEFAULTS, key=lambda c: c.__qualname__), ids=lambda c: c.__name__)
def test_each_class_says_whether_it_is_retriable(cls: type[ConnectorError]) -> None:
    assert cls.retriable is DEFAULTS[cls]


def test_every_error_class_of_the_connector_has_a_pinned_default() -> None:
    missing = {c.__qualname__ for c in _all_error_classes()} - {c.__qualname__ for c in DEFAULTS}
    known_elsewhere = {"ValidationError", "DecodeWorkerError", "NothingToSend", "StatsError", "TaskFailedError",
                       "MetricsServerError", "TopicScanError", "DncRefreshError"}
    assert missing <= known_elsewhere, missing - known_elsewhere


def test_instances_decide_where_the_cause_does() -> None:
    assert SerdeError("registry down", retriable=True).retriable  # a Schema Registry outage: wait
    assert ProduceError("queue full", retriable=True, code="_QUEUE_FULL").retriable
    assert not ProduceError("too large", retriable=False).retriable
    assert RateLimitedError(429, "slow down").retriable and not ClientError(400, "bad item").retriable
    assert not RetriesExhaustedError(8, ServerError(503, "")).retriable  # the caller decides what then
