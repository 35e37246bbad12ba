"""Logging set-up: plain or JSON lines, with phone numbers masked in every record.

Masking is a ``logging.Filter`` on the root handler, so a phone number that slips into a
message or an argument is still masked: any run of 7+ digits (with the usual separators)
keeps only its last two digits (``+14155550123`` becomes ``*********23``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from connector.core.phones import mask_phones_in


def mask_phone(text: str) -> str:
    """Mask every phone-like run in ``text``, keeping its last two digits."""
    return mask_phones_in(text)


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with phone numbers masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_phone(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


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
                out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = mask_phone(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Install one stderr handler on the root logger, replacing any previous one."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MaskingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log would print request paths; our own logs say what matters.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
