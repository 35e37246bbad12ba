"""Dead-letter headers in Kafka Connect's convention.

A dead-lettered record keeps its original key, value and headers; these headers are added
so any Kafka Connect tooling can read why and where from
(``errors.deadletterqueue.context.headers.enable``):

==========================================  ============================================
``__connect.errors.topic``                  source topic
``__connect.errors.partition``              source partition (decimal string)
``__connect.errors.offset``                 source offset (decimal string)
``__connect.errors.exception.class.name``   the error class, e.g. ``connector.errors.PhoneError``
``__connect.errors.exception.message``      the reason, truncated to :data:`MAX_MESSAGE_BYTES`
``__connect.errors.stage``                  our stage: ``decode``, ``normalise``, ``validate``,
                                            ``dnc``, ``deliver``, ...
==========================================  ============================================

Pure: no I/O. Callers pass messages that never hold a full phone number (they mask first);
as a second line of defence :func:`build_dlq_headers` masks any phone-like run it finds.
"""

from __future__ import annotations

from collections.abc import Iterable

from connector.core.phones import mask_phones_in

PREFIX = "__connect.errors."
TOPIC = PREFIX + "topic"
PARTITION = PREFIX + "partition"
OFFSET = PREFIX + "offset"
EXCEPTION_CLASS = PREFIX + "exception.class.name"
EXCEPTION_MESSAGE = PREFIX + "exception.message"
STAGE = PREFIX + "stage"

#: Upper bound of the message header, in UTF-8 bytes (a reason, not a dump).
MAX_MESSAGE_BYTES = 1024
#: Upper bound of the class-name and stage headers, in UTF-8 bytes.
MAX_NAME_BYTES = 200

_ELLIPSIS = "..."
def truncate_utf8(text: str, limit: int) -> bytes:
    """Encode ``text`` as UTF-8 in at most ``limit`` bytes, never splitting a character.

    A truncated result ends with ``...`` (counted within the limit).
    """
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return raw
    cut = raw[: max(0, limit - len(_ELLIPSIS))]
    return cut.decode("utf-8", errors="ignore").encode("utf-8") + _ELLIPSIS.encode()[: limit]


def build_dlq_headers(
    original: Iterable[tuple[str, bytes | None]] | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    stage: str,
    error_class: str,
    message: str,
) -> list[tuple[str, bytes]]:
    """The header list of a dead-lettered record.

    Args:
        original: the source record's headers, preserved in order (``None`` values become
            empty bytes). Any existing ``__connect.errors.*`` header is dropped, so a record
            dead-lettered twice carries only the latest reason.
        topic: source topic.
        partition: source partition.
        offset: source offset.
        stage: the pipeline stage that rejected it.
        error_class: the error's qualified class name.
        message: the reason; phone-like digit runs are masked and the result truncated to
            :data:`MAX_MESSAGE_BYTES`.

    Returns:
        ``[(name, value_bytes), ...]``: the originals first, then the six error headers.
    """
    headers: list[tuple[str, bytes]] = [
        (name, value if value is not None else b"")
        for name, value in (original or ())
        if not name.startswith(PREFIX)
    ]
    headers += [
        (TOPIC, topic.encode("utf-8")),
        (PARTITION, str(partition).encode()),
        (OFFSET, str(offset).encode()),
        (EXCEPTION_CLASS, truncate_utf8(error_class, MAX_NAME_BYTES)),
        (EXCEPTION_MESSAGE, truncate_utf8(mask_phones_in(message), MAX_MESSAGE_BYTES)),
        (STAGE, truncate_utf8(stage, MAX_NAME_BYTES)),
    ]
    return headers


def plain_headers(raw: object) -> list[tuple[str, bytes]]:
    """A message's headers as ``[(name, bytes)]``, whatever shape the client gave them.

    confluent-kafka returns a list of ``(str, bytes | None)``, but headers may also be given
    as a dict or with ``str`` values; ``None`` becomes ``b""`` and text is UTF-8 encoded.
    """
    if not raw:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    out: list[tuple[str, bytes]] = []
    for name, value in items:  # type: ignore[attr-defined]
        if value is None:
            out.append((str(name), b""))
        elif isinstance(value, str):
            out.append((str(name), value.encode("utf-8")))
        else:
            out.append((str(name), bytes(value)))
    return out


def error_class_name(exc: BaseException | type[BaseException]) -> str:
    """``module.QualName`` of an exception or exception class, as Connect records it."""
    cls = exc if isinstance(exc, type) else type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def header_dict(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """The ``__connect.errors.*`` headers decoded to text (for tests, tools and logs)."""
    return {
        name: (value or b"").decode("utf-8", errors="replace")
        for name, value in headers
        if name.startswith(PREFIX)
    }
