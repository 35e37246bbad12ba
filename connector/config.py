"""Configuration: one TOML file plus environment overrides, as frozen dataclasses.

Each section of the file is one dataclass, grouped by concern. Any key can be overridden
from the environment as ``CXONE_CONNECTOR__<SECTION>__<KEY>`` (upper case, double
underscores), for example ``CXONE_CONNECTOR__KAFKA__BOOTSTRAP_SERVERS``. Pass-through
librdkafka tables take their keys with dots as underscores:
``CXONE_CONNECTOR__KAFKA_COMMON__SECURITY_PROTOCOL=SASL_SSL``.

Secrets never sit in the file. A secret key holds a reference, ``env:NAME`` or
``file:PATH``, resolved at load time into a :class:`Secret` whose ``repr`` and ``str``
never show the value.

Loading collects every problem before failing, so ``check-config`` can report them all at
once with the key and the reason (:class:`connector.errors.ConfigError`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from connector.errors import ConfigError
from connector.typed_config import Secret, build_dataclass, resolve_secret

__all__ = ["ConfigError", "Secret", "Settings", "all_keys", "env_var_name", "load_file", "load_settings",
           "resolve_secret"]

ENV_PREFIX = "CXONE_CONNECTOR__"
#: A DNC list name; the same rule as ``connector.core.dnc_keys.LIST_NAME_RE`` (config imports no
#: core module; tests/unit/test_config.py keeps the two equal).
DNC_LIST_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class KafkaSettings:
    """Broker connection and consumer behaviour."""

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "cxone-connector"
    client_id: str = "cxone-connector"
    #: How many records one ``consume()`` call returns at most.
    consume_batch_size: int = 1000
    poll_timeout_s: float = 0.2
    #: Upper bound on consumed but unsettled records; the consumer pauses above it.
    max_unsettled: int = 200_000
    #: librdkafka statistics interval feeding the lag metrics (0 disables).
    statistics_interval_ms: int = 5000
    #: ``avro`` (schemaless), ``confluent`` (magic byte + schema id) or ``auto``.
    value_format: Literal["avro", "confluent", "auto"] = "auto"
    schema_registry_url: str = ""


@dataclass(frozen=True)
class TopicSettings:
    """Topic names (design.md, "Topics")."""

    contacts: str = "crm.contacts.optin"
    dnc: str = "dnc.numbers"
    job_events: str = "cxone.job-events"
    callback_results: str = "cxone.callback-results"
    suppressed: str = "crm.contacts.suppressed"
    dlq: str = "crm.contacts.dlq"
    #: Compacted: each DNC list's last ``dnc sync`` (``DncListRefresh``, keyed by list name).
    dnc_lists: str = "dnc.lists"


@dataclass(frozen=True)
class PhoneSettings:
    """Normalisation to E.164."""

    default_region: str = "US"
    #: Spellings remembered (about 170 bytes each; every number takes up to three: +CC, national,
    #: trunk-prefixed). Size it to about three times the distinct numbers in flight.
    cache_size: int = 1_000_000
    #: Replay phonenumbers' parse for plain spellings (``connector/core/phone_fast.py``): the
    #: same answers, ~15 times faster for a new number. False: phonenumbers for every number.
    fast_path: bool = True


@dataclass(frozen=True)
class IngestSettings:
    """How the consumed records are decoded."""

    #: Worker processes that decode, validate and normalise records, spread by record key
    #: (see connector/pipeline/decode_lanes.py): unset, one per CPU but one (at most 4); 0, none (on the loop).
    workers: int | None = None


@dataclass(frozen=True)
class DncListSettings:
    """One DNC list's freshness policy: a ``[dnc.lists.<name>]`` table."""

    #: The oldest registry copy submission may rely on, in days since the sync's ``as_of``
    #: date (00:00 UTC); unset: no limit. 31 for the National DNC Registry (FTC safe harbor).
    max_age_days: int | None = None
    #: Stop submission while the list is stale (older than ``max_age_days``, or no record
    #: at all); false: only report it (metric, alerts, ``/readyz`` reason).
    enforce: bool = True


@dataclass(frozen=True)
class DncSettings:
    """The DNC table materialised from the compacted topic."""

    publish_opt_outs: bool = False
    opt_out_list: str = "crm-opt-out"
    bootstrap_timeout_s: float = 600.0
    #: The table is *current* while its thread is alive and every partition of the DNC topic
    #: had a successful fetch within this many seconds; otherwise nothing is submitted.
    max_stall_s: float = 30.0
    #: After the table has not been current for this long, the process exits (code 1) so
    #: that the orchestrator restarts it.
    max_unavailable_s: float = 300.0
    #: Region of DNC keys written in a national spelling (normalised before rejecting them).
    default_region: str = "US"
    #: List under which a number with an unreadable DNC value is blocked.
    unreadable_list: str = "unreadable"
    #: Directory of the DNC table's snapshot (empty: no snapshots, every start reads the topic).
    state_dir: str = ""
    #: How often a snapshot is written (and once more at a clean shutdown).
    snapshot_interval_s: float = 300.0
    #: Freshness policies by list name (``[dnc.lists.national]``, ``max_age_days = 31``).
    lists: Mapping[str, DncListSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowSettings:
    """When a batch is flushed. ``max_items`` is capped by the profile's limit."""

    max_items: int = 10_000
    max_bytes: int = 8_000_000
    max_age_s: float = 5.0


@dataclass(frozen=True)
class CallingHoursSettings:
    """The time zone each uploaded contact carries, so the dialler keeps to calling hours
    (47 CFR 64.1200(c)(1)); see docs/architecture.md, "Calling-hours data"."""

    #: IANA zone (e.g. ``America/New_York``) of an opt-in whose zone neither the event, its ZIP
    #: code or state, nor its number gives; empty: such an opt-in has none.
    default_time_zone: str = ""
    #: What happens to an opt-in with no zone at all: ``send`` it without one, or ``refuse``
    #: it (audited as ``NO_TIME_ZONE`` on the audit topic instead of sent).
    unknown: Literal["send", "refuse"] = "send"


@dataclass(frozen=True)
class CXoneSettings:
    """Which API profile, where it lives, and how to authenticate.

    ``v2`` uses ``base_url``, ``client_id``/``client_secret`` and ``scopes``. ``call-lists``
    uses ``auth_base_url`` for OpenID and API discovery, ``access_key_id``/
    ``access_key_secret`` for the password grant (``auth_method = "password"``) or the
    access-key token call (``"access_key"``), and ``api_base_url`` only when discovery
    must be bypassed.
    """

    profile: Literal["v2", "call-lists"] = "v2"
    base_url: str = "http://127.0.0.1:8700"
    ws_url: str = ""
    client_id: str = "connector"
    client_secret: Secret | None = None
    scopes: str = "outbound:contactlistitem:write outbound:job:read events:subscribe"
    contact_list_id: str = "12345678-1234-1234-1234-123456789012"
    auth_base_url: str = ""
    api_base_url: str = ""
    api_version: str = "v34.0"
    #: call-lists: ``password`` (OIDC password grant, client id/secret as Basic auth) or
    #: ``access_key`` (``POST /authentication/v1/token/access-key`` with JSON).
    auth_method: Literal["password", "access_key"] = "password"
    #: call-lists, ``access_key``: the token URL; empty derives it from ``auth_base_url``.
    access_key_token_url: str = ""
    access_key_id: str = ""
    access_key_secret: Secret | None = None
    call_list_id: str = ""
    skill_id: int = 0
    #: call-lists: CSV column (and create-list ``timeZoneColumn``) for each record's time zone;
    #: empty sends none.
    time_zone_column: str = "timeZone"
    #: call-lists: the upload's ``defaultTimeZone`` for records without one (empty: not sent).
    default_time_zone: str = ""
    #: call-lists: how DNC-group records carry numbers: ``digits`` (an integer, no ``+``, as
    #: the live-checked client sends) or ``e164`` (a ``+`` string).
    dnc_phone_format: Literal["digits", "e164"] = "digits"
    #: call-lists: allow ``removeProspects`` (Proactive XS sources only; off by default).
    remove_prospects: bool = False
    #: call-lists: the ``sourceName`` of ``removeProspects``; empty uses the connector's list name.
    prospect_source_name: str = ""
    #: call-lists only: a CXone DNC group that every CRM opt-out is added to, so a contact
    #: delivered before its opt-out is never dialled (empty: off). See docs/architecture.md.
    dnc_group_id: str = ""
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_in_flight: int = 4
    max_request_attempts: int = 8
    #: Client-side limit on CXone API requests per second of one client (0: none). A 429
    #: also closes the client's gate until its Retry-After and halves the pace (AIMD, also
    #: when this is 0); see connector/cxone/pacing.py.
    max_requests_per_second: float = 0.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class MonitorSettings:
    """Following jobs to a terminal state."""

    use_websocket: bool = True
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    poll_interval_s: float = 1.0
    poll_interval_max_s: float = 15.0
    job_deadline_s: float = 300.0
    max_job_attempts: int = 3


@dataclass(frozen=True)
class CallbackSettings:
    """Webhook called when a batch settles."""

    urls: tuple[str, ...] = ()
    secret: Secret | None = None
    max_attempts: int = 5
    timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class ServerSettings:
    """Metrics and health HTTP endpoints."""

    host: str = "0.0.0.0"  # noqa: S104 - the metrics port must be reachable in a pod
    port: int = 9400
    #: /healthz fails when the consumer thread has not polled for this long.
    consumer_stall_s: float = 30.0


@dataclass(frozen=True)
class HealthSettings:
    """What ``/healthz`` checks beyond the consumer thread's polls."""

    #: ``/healthz`` fails when records have been unsettled for this long while nothing settled.
    max_unsettled_age_s: float = 600.0


@dataclass(frozen=True)
class LoggingSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json: bool = False


@dataclass(frozen=True)
class Settings:
    """The whole configuration. ``kafka_common``/``_consumer``/``_producer`` pass straight
    through to librdkafka (TLS, SASL, ...)."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    kafka_common: Mapping[str, str] = field(default_factory=dict)
    kafka_consumer: Mapping[str, str] = field(default_factory=dict)
    kafka_producer: Mapping[str, str] = field(default_factory=dict)
    topics: TopicSettings = field(default_factory=TopicSettings)
    phones: PhoneSettings = field(default_factory=PhoneSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    dnc: DncSettings = field(default_factory=DncSettings)
    window: WindowSettings = field(default_factory=WindowSettings)
    calling_hours: CallingHoursSettings = field(default_factory=CallingHoursSettings)
    cxone: CXoneSettings = field(default_factory=CXoneSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    shutdown_deadline_s: float = 30.0


PASSTHROUGH_SECTIONS = ("kafka_common", "kafka_consumer", "kafka_producer")


def _section_classes() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {
        name: hints[name]
        for name in hints
        if dataclasses.is_dataclass(hints[name])
    }


def env_var_name(section: str, key: str) -> str:
    """The environment variable that overrides ``section.key`` (``section`` may be empty)."""
    return _env_name(f"{section}.{key}" if section else key)


def all_keys() -> list[tuple[str, str, Any]]:
    """Every ``(section, key, default)`` the file may hold; used by docs and tests."""
    out: list[tuple[str, str, Any]] = []
    for section, cls in _section_classes().items():
        for f in dataclasses.fields(cls):
            factory = f.default_factory
            default = factory() if f.default is dataclasses.MISSING and callable(factory) else f.default
            out.append((section, f.name, default))
    out.append(("", "shutdown_deadline_s", Settings.shutdown_deadline_s))
    return out


def _passthrough(
    name: str, data: Any, env: Mapping[str, str], problems: list[tuple[str, str]]
) -> dict[str, str]:
    out: dict[str, str] = {}
    if not isinstance(data, dict):
        problems.append((name, "expected a table of librdkafka settings"))
        data = {}
    for key, value in data.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        else:
            problems.append((f"{name}.{key}", "librdkafka settings must be strings or numbers"))
    prefix = f"{ENV_PREFIX}{name.upper()}__"
    for var, value in env.items():
        if var.startswith(prefix):
            out[var[len(prefix):].lower().replace("_", ".")] = value
    return out


def _validate(settings: Settings, problems: list[tuple[str, str]]) -> None:
    """Cross-field checks that no single type can express."""
    if settings.window.max_items < 1:
        problems.append(("window.max_items", "must be at least 1"))
    if settings.cxone.profile == "v2" and settings.window.max_items > 10_000:
        problems.append(("window.max_items", "the v2 profile accepts at most 10,000 items per bulk insert"))
    if settings.cxone.profile == "call-lists" and settings.window.max_items > 500_000:
        problems.append(
            ("window.max_items", "the call-lists profile accepts at most 500,000 records per file")
        )
    if settings.cxone.max_in_flight < 1:
        problems.append(("cxone.max_in_flight", "must be at least 1"))
    if settings.kafka.max_unsettled < settings.kafka.consume_batch_size:
        problems.append(("kafka.max_unsettled", "must be at least kafka.consume_batch_size"))
    if settings.kafka.value_format == "confluent" and not settings.kafka.schema_registry_url:
        problems.append(("kafka.schema_registry_url", "required when kafka.value_format is 'confluent'"))
    if settings.callbacks.urls and settings.callbacks.secret is None:
        problems.append(("callbacks.secret", "required when callbacks.urls is set (HMAC signature)"))
    for url_key in ("base_url", "auth_base_url", "api_base_url", "ws_url", "access_key_token_url"):
        url = getattr(settings.cxone, url_key)
        if url and not url.startswith(("http://", "https://", "ws://", "wss://")):
            problems.append((f"cxone.{url_key}", "must be an http(s):// or ws(s):// URL"))
    if settings.cxone.profile == "v2" and settings.cxone.dnc_group_id:
        problems.append(("cxone.dnc_group_id", "the v2 profile has no DNC-group endpoint; only call-lists uses it"))
    if settings.cxone.profile == "call-lists" and not settings.cxone.auth_base_url:
        problems.append(("cxone.auth_base_url", "required for the call-lists profile (OpenID discovery)"))
    _validate_cxone(settings.cxone, problems)
    _validate_dnc_lists(settings.dnc.lists, problems)
    zone = settings.calling_hours.default_time_zone
    if zone and not _is_time_zone(zone):
        problems.append(("calling_hours.default_time_zone", "must be an IANA time zone name, e.g. America/New_York"))


def _validate_cxone(cx: CXoneSettings, problems: list[tuple[str, str]]) -> None:
    """Checks of the CXone API details (version, time-zone column, removeProspects)."""
    if not re.fullmatch(r"v[0-9]+\.0", cx.api_version):
        problems.append(("cxone.api_version", "must look like v34.0"))
    if cx.time_zone_column in ("externalId", "phone", "firstName", "lastName", "email"):
        problems.append(("cxone.time_zone_column", "must not be a column the upload file already has"))
    if cx.remove_prospects and cx.profile != "call-lists":
        problems.append(("cxone.remove_prospects", "only the call-lists profile has removeProspects"))


def _validate_dnc_lists(lists: Mapping[str, DncListSettings], problems: list[tuple[str, str]]) -> None:
    env_names: dict[str, str] = {}
    for name, policy in lists.items():
        if not DNC_LIST_NAME_RE.match(name):
            problems.append((f"dnc.lists.{name}", "not a valid DNC list name (letters, digits, '.', '_', '-')"))
        if policy.max_age_days is not None and policy.max_age_days < 1:
            problems.append((f"dnc.lists.{name}.max_age_days", "must be at least 1 (leave it unset for no limit)"))
        var = _env_name(f"dnc.lists.{name}")
        if var in env_names:
            problems.append((f"dnc.lists.{name}", f"shares its environment overrides ({var}__*) with "
                             f"list {env_names[var]!r}"))
        env_names[var] = name


def _is_time_zone(name: str) -> bool:
    """Whether the tz database knows ``name`` (any letter case, as the connector reads it)."""
    lowered = name.strip().lower()
    return any(z.lower() == lowered for z in zoneinfo.available_timezones() - {"Factory", "localtime", "posixrules"})


def load_settings(
    data: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build :class:`Settings` from a parsed TOML mapping and the environment.

    Raises:
        ConfigError: listing every problem found, each with its key and reason.
    """
    data = dict(data or {})
    env = os.environ if env is None else env
    problems: list[tuple[str, str]] = []
    typed = {k: v for k, v in data.items() if k not in PASSTHROUGH_SECTIONS}
    settings = build_dataclass(Settings, typed, "", env, problems, env_name=_env_name)
    settings = dataclasses.replace(
        settings, **{name: _passthrough(name, data.get(name, {}), env, problems) for name in PASSTHROUGH_SECTIONS}
    )
    _validate(settings, problems)
    if problems:
        raise ConfigError(problems)
    return typing.cast(Settings, settings)


def _env_name(dotted_key: str) -> str:
    # A DNC list name may hold "-" (dnc.lists.crm-opt-out.enforce): other characters than
    # letters, digits and "_" become "_", so every variable is a shell name.
    return ENV_PREFIX + re.sub(r"[^A-Z0-9_]", "_", dotted_key.upper().replace(".", "__"))


def load_file(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read a TOML file and build :class:`Settings`.

    Raises:
        ConfigError: the file cannot be read or parsed, or has problems (all listed).
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None
    return load_settings(data, env)
