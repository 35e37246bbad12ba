"""Logging set-up: plain or JSON lines, with phone numbers masked and secrets redacted.

Everything a log line can carry passes :func:`scrub`: the message, its arguments, a
traceback, and (in JSON) every ``extra`` field. :func:`scrub` masks any run of 7+ digits
(with the usual separators) down to its last two digits (``+14155550123`` becomes
``*********23``) and replaces every registered secret (:func:`register_secret`: the
configured credentials, the access tokens fetched at run time) with ``<redacted>``.
Job events and callback results written to Kafka carry CXone's and webhooks' error texts
through :func:`scrub` too.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
from typing import Any

from connector.core.phones import mask_phones_in

#: Secrets shorter than this are not redacted (they would match ordinary words).
_MIN_SECRET_LEN = 6
#: Rotating secrets (access tokens) remembered: the latest ones are the ones in use.
_MAX_ROTATING = 16
_secrets: set[str] = set()
_rotating: collections.deque[str] = collections.deque(maxlen=_MAX_ROTATING)
_secrets_lock = threading.Lock()
_REDACTED = "<redacted>"


def register_secret(value: str, *, rotating: bool = False) -> None:
    """Redact ``value`` from every log line and error text from now on (idempotent).

    Args:
        rotating: a short-lived secret (an access token): only the latest few are kept.
    """
    if len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            if rotating:
                if value not in _rotating:
                    _rotating.append(value)
            else:
                _secrets.add(value)


def mask_phone(text: str) -> str:
    """Mask every phone-like run in ``text``, keeping its last two digits."""
    return mask_phones_in(text)


def scrub(text: str) -> str:
    """``text`` with registered secrets redacted and phone numbers masked."""
    if _secrets or _rotating:
        with _secrets_lock:
            secrets = sorted({*_secrets, *_rotating}, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
    return mask_phones_in(text)


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with phone numbers masked and secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = scrub(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


class PlainFormatter(logging.Formatter):
    """``time level logger: message``, and the traceback, all scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                try:
                    out[key] = value if isinstance(value, int | float | bool | None) else scrub(str(value))
                except Exception:  # a dead weak proxy, a broken __str__: never lose the line for it
                    out[key] = "<unprintable>"
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        out["message"] = scrub(out["message"])
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Install one stderr handler on the root logger, replacing any previous one."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MaskingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log would print request paths; our own logs say what matters.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
