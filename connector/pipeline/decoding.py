"""Decode, validate and normalise CRM records: the per-record work of ingest stages 1-2.

Pure (fastavro and phonenumbers, no Kafka, no asyncio), and a plain function of picklable
arguments, so the same code runs on the event loop or in a worker process
(:mod:`connector.pipeline.decode_lanes`). Per record, in order:

1. **decode** the value (Avro via :mod:`connector.serde.codec`); undecodable → stage ``decode``;
2. **validate**: an empty key, a null value or a field beyond :data:`LIMITS` → stage
   ``validate`` (the message names the field and the bound, never the value);
3. **normalise** the phone to E.164 (:class:`connector.core.phones.PhoneNormalizer`, the event's
   region hint first); invalid → stage ``normalise`` with the reason code;
4. **time zone** of an opt-in, for calling hours (:class:`connector.core.time_zones.TimeZoneResolver`:
   the event's zone, ZIP code or state, else the number, else ``DecodeSpec.default_time_zone``);
   never a failure: an unknown zone is ``""``, and the core refuses it or not.

Each record gives back one plain tuple (cheap to pickle, no class to import on the other
side): :data:`OK` and the fields, or the stage that failed with the error. The payload size
the window needs (:func:`connector.core.windowing.item_payload_bytes`) is computed here too, so
that it runs where the decoding runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from connector.core.models import pack_details
from connector.core.phones import PhoneNormalizer, mask_phones_in
from connector.core.time_zones import TimeZoneResolver
from connector.core.windowing import measure_item
from connector.errors import ConnectorError, PhoneError, SerdeError
from connector.kafka.dlq_headers import error_class_name
from connector.serde.codec import AvroCodec

STAGE_DECODE = "decode"
STAGE_VALIDATE = "validate"
STAGE_NORMALISE = "normalise"
#: Not a bad record: the Schema Registry could not be reached; decode it again later.
STAGE_RETRY = "retry"

#: First element of a decoded record's tuple (the others hold a failed stage's name).
OK = ""

#: Upper bounds on decoded fields, in characters (the CXone item fields are far shorter;
#: anything beyond these is a CRM bug or hostile input, not a contact). Keys are the
#: ContactOptInChanged field names; ``custom_fields`` bounds its entry count, and
#: ``custom_field_key`` / ``custom_field_value`` each entry.
LIMITS: Mapping[str, int] = {
    "event_id": 128,
    "contact_id": 128,
    "first_name": 256,
    "last_name": 256,
    "email": 320,  # RFC 5321: 64 local + @ + 255 domain
    "region_hint": 8,
    "source": 64,
    "custom_fields": 50,
    "custom_field_key": 64,
    "custom_field_value": 1024,
    "time_zone": 64,  # the longest IANA name is 32
    "zip_code": 16,
    "state": 64,
}
#: Bytes of a record key (a contact id) before it is rejected.
MAX_KEY_BYTES = 256
#: ``changed_at`` (epoch milliseconds) within years 1 to 9999, the dates a CXone body can
#: carry (``optInDate``); outside them a record is rejected here, not when its batch is sent.
CHANGED_AT_RANGE = (-62_135_596_800_000, 253_402_300_799_999)
_STRING_FIELDS = tuple((name, LIMITS[name]) for name in
                       ("event_id", "contact_id", "first_name", "last_name", "email", "region_hint", "source",
                        "time_zone", "zip_code", "state"))


class ValidationError(ConnectorError):
    """A decoded record that breaks a bound in :data:`LIMITS` (fatal for the record)."""


#: The class name written to the DLQ for a validation failure.
VALIDATION_ERROR = error_class_name(ValidationError)
_SERDE_ERROR = error_class_name(SerdeError)
_PHONE_ERROR = error_class_name(PhoneError)


def validate_record(key: bytes | None, record: Mapping[str, Any]) -> str | None:
    """Check a decoded ContactOptInChanged against :data:`LIMITS`.

    Returns:
        None when acceptable, else the reason (names the field and the bound, never the value).
    """
    if not key:
        return "empty key"
    if len(key) > MAX_KEY_BYTES:
        return f"key longer than {MAX_KEY_BYTES} bytes"
    if not record.get("contact_id"):
        return "empty contact_id"
    if not record.get("event_id"):
        return "empty event_id"
    for name, limit in _STRING_FIELDS:
        value = record.get(name)
        if value is not None and len(value) > limit:
            return f"{name} longer than {limit} characters ({len(value)})"
    changed_at = record.get("changed_at")
    if isinstance(changed_at, int) and not CHANGED_AT_RANGE[0] <= changed_at <= CHANGED_AT_RANGE[1]:
        return "changed_at outside years 1 to 9999"
    fields = record.get("custom_fields") or {}
    if len(fields) > LIMITS["custom_fields"]:
        return f"more than {LIMITS['custom_fields']} custom_fields ({len(fields)})"
    for name, value in fields.items():
        if len(name) > LIMITS["custom_field_key"]:
            return f"a custom_fields key longer than {LIMITS['custom_field_key']} characters"
        if len(value) > LIMITS["custom_field_value"]:
            return f"custom_fields value longer than {LIMITS['custom_field_value']} characters"
    return None


#: :func:`validate_record` as the decoder runs it: its C twin
#: (``connector/core/_record_checks.pyx``) when the extension was built.
validate: Callable[[bytes | None, Mapping[str, Any]], str | None]
try:
    from connector.core._record_checks import Validator
except ImportError:  # pragma: no cover - a build without the C extensions
    validate = validate_record
else:
    validate = Validator(_STRING_FIELDS, MAX_KEY_BYTES, LIMITS["custom_fields"], LIMITS["custom_field_key"],
                         LIMITS["custom_field_value"], CHANGED_AT_RANGE)


@dataclass(frozen=True)
class DecodeSpec:
    """Everything a decoder is built from (hashable: worker processes keep one per spec).

    Attributes:
        wire_format: ``avro``, ``confluent`` or ``auto`` (see :mod:`connector.serde.codec`).
        schema_registry_url: resolves unknown schema ids when set.
        default_region: the normaliser's default region.
        cache_size: the normaliser's cache entries (the time-zone cache keeps a third as many
            numbers: the normaliser keeps up to three spellings of each).
        default_time_zone: the zone of an opt-in no source resolves (``calling_hours.default_time_zone``);
            ``""`` leaves it unknown.
    """

    wire_format: Literal["avro", "confluent", "auto"] = "auto"
    schema_registry_url: str = ""
    default_region: str = "US"
    cache_size: int = 1_000_000
    default_time_zone: str = ""
    phone_fast_path: bool = True


#: What :meth:`Decoder.decode_many` returns per record. Success:
#: ``(OK, contact_id, phone_e164, opted_in, payload_bytes, details, time_zone, time_zone_source)``,
#: the arguments of :class:`connector.core.models.ContactEvent` after its source fields
#: (``details`` packs the rest, :func:`connector.core.models.pack_details`; an opt-out's zone and
#: source are ``""``: it is never sent); failure:
#: ``(stage, error_class, message, reason)`` with ``reason`` the metric label
#: (the stage, or the phone rejection reason).
Decoded = tuple[Any, ...]


class Decoder:
    """Turns raw ``(key, value)`` pairs into :data:`Decoded` tuples.

    Args:
        spec: the codec and normaliser settings.
        codec: a ready codec (tests); built from ``spec`` by default.
        normalizer: a ready normaliser (tests); built from ``spec`` by default.
        time_zones: a ready resolver (tests); built from ``spec`` by default.

    Raises:
        ValueError: ``spec.default_time_zone`` is not a zone the tz database knows, or
            ``spec.default_region`` not a region phonenumbers knows.
    """

    def __init__(self, spec: DecodeSpec, *, codec: AvroCodec | None = None,
                 normalizer: PhoneNormalizer | None = None, time_zones: TimeZoneResolver | None = None) -> None:
        self.spec = spec
        if codec is None:
            resolver = None
            if spec.schema_registry_url:
                from connector.serde.registry import RegistryClient

                resolver = RegistryClient(spec.schema_registry_url)
            codec = AvroCodec("ContactOptInChanged", wire_format=spec.wire_format, resolver=resolver)
        self.codec = codec
        self.normalizer = normalizer or PhoneNormalizer(spec.default_region, spec.cache_size,
                                                        fast_path=spec.phone_fast_path)
        self.time_zones = time_zones or TimeZoneResolver(spec.default_time_zone, spec.cache_size // 3)

    def decode_many(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> list[Decoded]:
        """Decode, validate and normalise ``(key, value)`` pairs, in order.

        Never raises for bad input: every failure is a tuple naming its stage. A failure
        nobody foresaw (a bug, hostile bytes reaching a library) is caught per record too and
        named by its exception class, so one poison record can never crash the process into a
        restart loop that reads it again. A Schema Registry that cannot be reached gives
        :data:`STAGE_RETRY`: the record is not bad, the driver decodes it again later.
        """
        decode = self.codec.decode
        normalize = self.normalizer.outcome
        resolve = self.time_zones.resolve
        out: list[Decoded] = []
        append = out.append
        for key, value in records:
            stage = STAGE_DECODE
            try:
                if value is None:
                    append((STAGE_VALIDATE, VALIDATION_ERROR, "null value", STAGE_VALIDATE))
                    continue
                try:
                    record = decode(value)
                except SerdeError as exc:
                    if exc.retriable:
                        append((STAGE_RETRY, _SERDE_ERROR, str(exc), STAGE_RETRY))
                    else:
                        append((STAGE_DECODE, _SERDE_ERROR, str(exc), STAGE_DECODE))
                    continue
                stage = STAGE_VALIDATE
                problem = validate(key, record)
                if problem is not None:
                    append((STAGE_VALIDATE, VALIDATION_ERROR, problem, STAGE_VALIDATE))
                    continue
                stage = STAGE_NORMALISE
                phone = normalize(record["phone"], record["region_hint"])
                if isinstance(phone, tuple):
                    reason, message = phone
                    append((STAGE_NORMALISE, _PHONE_ERROR, f"{reason}: {message}", reason))
                    continue
                first, last, email, fields = record["first_name"], record["last_name"], record["email"], \
                    record["custom_fields"]
                source = record["source"] or ""
                opted_in = bool(record["opted_in"])
                if opted_in:  # an opt-out is never sent: no zone to find
                    get = record.get
                    zone, zone_source = resolve(get("time_zone"), get("zip_code"), get("state"), phone)
                else:
                    zone = zone_source = ""
                append((OK, record["contact_id"], phone, opted_in,
                        measure_item(phone, first, last, email, fields, source, zone),
                        pack_details(record["event_id"], first, last, email, fields, int(record["changed_at"]),
                                     source), zone, zone_source))
            except Exception as exc:  # a poison record: dead-lettered with its class, never a crash
                append((stage, error_class_name(exc), _unexpected(exc), stage))
        return out


def _unexpected(exc: BaseException) -> str:
    """The DLQ message of an unforeseen failure: its class and text, masked and bounded."""
    return mask_phones_in(f"unexpected {type(exc).__name__}: {exc}")[:500]


_DECODERS: dict[DecodeSpec, Decoder] = {}


def decode_chunk(spec: DecodeSpec, records: Sequence[tuple[bytes | None, bytes | None]]) -> list[Decoded]:
    """:meth:`Decoder.decode_many` with a decoder kept per spec for the life of the process
    (the worker-process entry point: its phone cache survives between chunks)."""
    decoder = _DECODERS.get(spec)
    if decoder is None:
        decoder = _DECODERS[spec] = Decoder(spec)
    return decoder.decode_many(records)
