"""Simulator configuration: nested frozen dataclasses, loadable from TOML.

Every fault is off by default, and the defaults match the connector's own defaults
(client id ``connector``, secret ``connector-secret``, ...), so ``Simulator()`` and
``cxone-connector run`` work together out of the box.

The credentials here are the *simulator's* fake credentials. In a file they may be written
literally, or as ``env:NAME`` / ``file:PATH`` references like the connector's own secrets.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from connector.errors import ConfigError
from connector.typed_config import Secret, build_dataclass

V2_SCOPES = "outbound:contactlistitem:write outbound:job:read events:subscribe"

#: How a profile treats the request's ``Accept`` header (see docs/simulator.md):
#: ``required``: it must name ``application/json`` (CXone answers "No known way to render
#: data" otherwise, even to ``*/*``); ``negotiated``: plain HTTP, a missing header, ``*/*``,
#: ``application/*`` and ``application/json`` all do, anything else is refused; ``off``:
#: never checked.
AcceptMode = Literal["required", "negotiated", "off"]


@dataclass(frozen=True)
class V2Settings:
    """Profile ``v2`` (the tutorial's API)."""

    client_id: str = "connector"
    client_secret: Secret = field(default_factory=lambda: Secret("connector-secret"))
    #: Space-separated scopes a client may ask for; omitted ``scope`` grants all of them.
    scopes: str = V2_SCOPES
    token_lifetime_s: float = 3600.0
    #: Most items one bulk insert may carry.
    max_items: int = 10_000
    #: ``required``: the event socket needs a bearer token (header or ``access_token``
    #: query parameter). ``optional``: a token is checked when given; the tutorial's
    #: script sends none, so its test runs with ``optional``.
    websocket_auth: Literal["required", "optional"] = "required"
    #: The tutorial's own script (``requests``) sends ``Accept: */*``: plain negotiation.
    accept: AcceptMode = "negotiated"


@dataclass(frozen=True)
class CallListsSettings:
    """Profile ``call-lists`` (the published Personal Connection API)."""

    client_id: str = "connector"
    client_secret: Secret = field(default_factory=lambda: Secret("connector-secret"))
    access_key_id: str = "ak-id"
    access_key_secret: Secret = field(default_factory=lambda: Secret("ak-secret"))
    tenant_id: str = "tenant-1"
    area: str = "sim"
    token_lifetime_s: float = 3600.0
    #: Key signing the HS256 access tokens (JWTs carrying ``tenantId``).
    jwt_secret: Secret = field(default_factory=lambda: Secret("simulator-jwt-key"))
    #: Version the connector is expected to use; any ``vNN.0`` path is accepted.
    api_version: str = "v34.0"
    max_records: int = 500_000
    max_file_bytes: int = 256 * 1024 * 1024
    max_record_chars: int = 512
    #: CXone refuses a request that does not ask for JSON; so does the simulator by default.
    accept: AcceptMode = "required"
    #: Most records one page of ``GET /dnc-groups/{id}/records`` holds (a larger ``top`` is cut).
    max_page_size: int = 100


@dataclass(frozen=True)
class JobSettings:
    """How fast jobs run."""

    #: Total items (records) processed per second, shared by the running jobs.
    items_per_second: float = 50_000.0
    #: How many jobs run at once; later ones wait QUEUED.
    concurrency: int = 4
    #: Period of the job clock, in seconds.
    tick_s: float = 0.02


@dataclass(frozen=True)
class LimitSettings:
    """Tenant-wide limits."""

    #: Active records (all lists plus DNC groups, both profiles); a submission that would
    #: pass it is refused with 400 ``tenant_record_limit``.
    tenant_active_records: int = 1_000_000


@dataclass(frozen=True)
class RateLimitFaults:
    """A token bucket in front of the API; an empty bucket answers 429."""

    enabled: bool = False
    requests_per_second: float = 10.0
    burst: int = 10
    #: Send ``Retry-After`` (whole seconds) with the 429; CXone is reported not to.
    retry_after: bool = True


@dataclass(frozen=True)
class LatencyFaults:
    """Delay before each answer."""

    distribution: Literal["none", "fixed", "uniform", "exponential"] = "none"
    #: ``fixed`` waits ``min_ms``; ``uniform`` draws in [min_ms, max_ms];
    #: ``exponential`` waits ``min_ms`` plus an exponential draw of mean ``mean_ms``,
    #: capped at ``max_ms``.
    min_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0


@dataclass(frozen=True)
class ErrorFaults:
    """Server errors answered instead of the real response."""

    rate: float = 0.0
    statuses: tuple[int, ...] = (500, 502, 503)


@dataclass(frozen=True)
class ConnectionFaults:
    """Connections that end without an answer."""

    #: Fraction of requests whose connection is closed without any answer.
    drop_rate: float = 0.0
    #: Fraction of requests never answered (until the client gives up).
    hang_rate: float = 0.0
    #: A hung request is closed after this long at most, so nothing leaks.
    hang_max_s: float = 30.0


@dataclass(frozen=True)
class WebSocketFaults:
    """Event-stream faults (profile ``v2``)."""

    #: Close every event socket this many seconds after it opened (0: never).
    drop_every_s: float = 0.0
    #: ``close``: a clean close frame (code 1012); ``abort``: the TCP connection just ends.
    drop_mode: Literal["close", "abort"] = "close"
    #: After this many seconds a socket goes silent: no events, no pongs (0: never).
    silent_after_s: float = 0.0


@dataclass(frozen=True)
class JobFaults:
    """Jobs that end badly. FAILED and ABORTED jobs stop halfway and land no contacts."""

    failed_fraction: float = 0.0
    aborted_fraction: float = 0.0
    #: The first N jobs (since start or reset) end FAILED, whatever the fractions say.
    fail_first: int = 0


@dataclass(frozen=True)
class DncFaults:
    """DNC-group records that fail inside a 200 answer (``success: false``), as CXone may."""

    #: Numbers whose record fails on add and on expire (any spelling: the digits are compared).
    fail_numbers: tuple[str, ...] = ()
    #: 0: every attempt fails; N: the first N attempts of each chosen number fail, then it works.
    fail_times: int = 0


@dataclass(frozen=True)
class UploadFaults:
    """Rows of an upload that CXone keeps but rejects (invalid records, never dialled)."""

    #: Share of each upload's rows rejected, rounded to a whole number of rows; which rows
    #: is a seeded random draw.
    reject_fraction: float = 0.0


@dataclass(frozen=True)
class FaultSettings:
    """Every fault, all off by default. Changeable at runtime (``POST /_sim/faults``)."""

    #: Seed of the random draws (faults and job outcomes), for repeatable runs.
    seed: int = 0
    #: Path prefixes the HTTP faults apply to; empty means every API path. ``/_sim/``
    #: is never faulted.
    paths: tuple[str, ...] = ()
    #: When > 0, tokens of both profiles live this many seconds instead.
    token_lifetime_s: float = 0.0
    rate_limit: RateLimitFaults = field(default_factory=RateLimitFaults)
    latency: LatencyFaults = field(default_factory=LatencyFaults)
    errors: ErrorFaults = field(default_factory=ErrorFaults)
    connections: ConnectionFaults = field(default_factory=ConnectionFaults)
    websocket: WebSocketFaults = field(default_factory=WebSocketFaults)
    jobs: JobFaults = field(default_factory=JobFaults)
    dnc: DncFaults = field(default_factory=DncFaults)
    uploads: UploadFaults = field(default_factory=UploadFaults)


@dataclass(frozen=True)
class SimulatorConfig:
    """The whole simulator configuration."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (in-process use). ``cxone-connector simulate`` listens on 8700
    #: unless the file or ``--port`` says otherwise (``--port 0`` picks a free one).
    port: int = 0
    v2: V2Settings = field(default_factory=V2Settings)
    call_lists: CallListsSettings = field(default_factory=CallListsSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    #: Deliveries kept per webhook name (oldest dropped first).
    webhook_history: int = 10_000

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> SimulatorConfig:
        """Build a config from a parsed TOML mapping (missing keys keep their defaults).

        Raises:
            ConfigError: listing every unknown key and every badly typed or invalid value.
        """
        problems: list[tuple[str, str]] = []
        config = build_dataclass(cls, data, "", os.environ if env is None else env, problems,
                                 literal_secrets=True)
        problems.extend(validate(config))
        if problems:
            raise ConfigError(problems)
        return typing.cast(SimulatorConfig, config)

    @classmethod
    def from_file(cls, path: str | Path, env: Mapping[str, str] | None = None) -> SimulatorConfig:
        """Read a TOML file.

        Raises:
            ConfigError: the file cannot be read or parsed, or holds invalid settings.
        """
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError([(str(path), f"cannot read: {exc.strerror}")]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None
        return cls.from_mapping(data, env)


def validate(config: SimulatorConfig) -> list[tuple[str, str]]:
    """Cross-field checks; returns ``(key, reason)`` pairs (empty when valid)."""
    problems: list[tuple[str, str]] = []
    f = config.faults
    for key, value in (
        ("faults.errors.rate", f.errors.rate),
        ("faults.connections.drop_rate", f.connections.drop_rate),
        ("faults.connections.hang_rate", f.connections.hang_rate),
        ("faults.jobs.failed_fraction", f.jobs.failed_fraction),
        ("faults.jobs.aborted_fraction", f.jobs.aborted_fraction),
        ("faults.uploads.reject_fraction", f.uploads.reject_fraction),
    ):
        if not 0.0 <= value <= 1.0:
            problems.append((key, "must be between 0 and 1"))
    if f.jobs.failed_fraction + f.jobs.aborted_fraction > 1.0:
        problems.append(("faults.jobs", "failed_fraction + aborted_fraction must not exceed 1"))
    if f.errors.rate > 0 and not f.errors.statuses:
        problems.append(("faults.errors.statuses", "must list at least one status"))
    if any(not 500 <= s <= 599 for s in f.errors.statuses):
        problems.append(("faults.errors.statuses", "must be 5xx statuses"))
    if f.rate_limit.enabled and (f.rate_limit.requests_per_second <= 0 or f.rate_limit.burst < 1):
        problems.append(("faults.rate_limit", "requests_per_second must be > 0 and burst >= 1"))
    if f.latency.max_ms < f.latency.min_ms and f.latency.distribution in ("uniform", "exponential"):
        problems.append(("faults.latency.max_ms", "must be at least min_ms"))
    if config.jobs.items_per_second <= 0:
        problems.append(("jobs.items_per_second", "must be > 0"))
    if config.jobs.concurrency < 1:
        problems.append(("jobs.concurrency", "must be at least 1"))
    if config.jobs.tick_s <= 0:
        problems.append(("jobs.tick_s", "must be > 0"))
    if config.v2.max_items < 1 or config.call_lists.max_records < 1:
        problems.append(("v2.max_items / call_lists.max_records", "must be at least 1"))
    if config.v2.token_lifetime_s <= 0 or config.call_lists.token_lifetime_s <= 0:
        problems.append(("token_lifetime_s", "must be > 0"))
    if not re.fullmatch(r"v[0-9]+\.0", config.call_lists.api_version):
        problems.append(("call_lists.api_version", "must look like v34.0"))
    if config.call_lists.max_page_size < 1:
        problems.append(("call_lists.max_page_size", "must be at least 1"))
    if f.dnc.fail_times < 0:
        problems.append(("faults.dnc.fail_times", "must not be negative"))
    return problems


def to_mapping(obj: Any) -> Any:
    """A JSON-ready view of a config dataclass; secrets are shown as ``<hidden>``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Secret):
        return "<hidden>"
    if isinstance(obj, tuple):
        return [to_mapping(x) for x in obj]
    return obj


def merge_faults(current: FaultSettings, changes: Mapping[str, Any]) -> FaultSettings:
    """Apply a partial update (nested mappings) to ``current``.

    Raises:
        ConfigError: unknown keys or bad values, each named.
    """
    merged = _deep_merge(typing.cast(dict[str, Any], to_mapping(current)), changes)
    problems: list[tuple[str, str]] = []
    faults = build_dataclass(FaultSettings, merged, "faults.", {}, problems, literal_secrets=True)
    problems.extend(validate(SimulatorConfig(faults=faults)))
    if problems:
        raise ConfigError(problems)
    return typing.cast(FaultSettings, faults)


def _deep_merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
