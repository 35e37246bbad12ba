"""Validation of ``v2`` bulk-insert bodies. Pure.

Every problem is reported with the item index, the field and the reason, so a 400 answer
says exactly what to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connector.simulator.exceptions import ApiError, bad_request

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
ITEM_FIELDS = frozenset({"phoneNumber", "firstName", "lastName", "email", "customFields"})
MAX_NAME_CHARS = 100
MAX_LIST_ID_CHARS = 128
#: At most this many item problems are listed in one answer.
MAX_DETAILS = 20


@dataclass(frozen=True)
class BulkInsert:
    """A validated bulk insert."""

    contact_list_id: str
    items: list[dict[str, Any]]


def is_e164(value: object) -> bool:
    """True when ``value`` is a string in E.164 form (``+``, 2 to 15 digits, no leading 0)."""
    return isinstance(value, str) and E164.fullmatch(value) is not None


def _item_problems(index: int, item: Any) -> list[dict[str, Any]]:
    def problem(field: str | None, reason: str) -> dict[str, Any]:
        return {"index": index, "field": field, "reason": reason}

    if not isinstance(item, dict):
        return [problem(None, f"item must be an object, not {_kind(item)}")]
    out = [problem(k, "unknown field") for k in sorted(set(item) - ITEM_FIELDS)]
    phone = item.get("phoneNumber")
    if phone is None:
        out.append(problem("phoneNumber", "missing"))
    elif not isinstance(phone, str):
        out.append(problem("phoneNumber", f"must be a string, not {_kind(phone)}"))
    elif not is_e164(phone):
        out.append(problem("phoneNumber", "not an E.164 number (+ and 2 to 15 digits)"))
    for name in ("firstName", "lastName"):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            out.append(problem(name, f"must be a string, not {_kind(value)}"))
        elif isinstance(value, str) and len(value) > MAX_NAME_CHARS:
            out.append(problem(name, f"longer than {MAX_NAME_CHARS} characters"))
    email = item.get("email")
    if email is not None and not isinstance(email, str):
        out.append(problem("email", f"must be a string, not {_kind(email)}"))
    elif isinstance(email, str) and email and not EMAIL.fullmatch(email):
        out.append(problem("email", "not an e-mail address"))
    custom = item.get("customFields")
    if custom is not None:
        if not isinstance(custom, dict):
            out.append(problem("customFields", f"must be an object, not {_kind(custom)}"))
        else:
            for key, value in custom.items():
                if value is not None and not isinstance(value, str | int | float | bool):
                    out.append(problem(f"customFields.{key}", "values must be strings, numbers or booleans"))
    return out


def validate_bulk_insert(body: Any, max_items: int) -> BulkInsert:
    """Check a bulk-insert body.

    Raises:
        ApiError: 400 ``invalid_body`` (shape), ``too_many_items`` (over ``max_items``, naming
            the first index past the limit) or ``invalid_item`` (naming the first bad item,
            field and reason, plus up to 20 problems in ``details``).
    """
    if not isinstance(body, dict):
        raise bad_request("invalid_body", f"the body must be a JSON object, not {_kind(body)}")
    unknown = sorted(set(body) - {"contactListId", "items"})
    if unknown:
        raise bad_request("invalid_body", f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    list_id = body.get("contactListId")
    if not isinstance(list_id, str) or not list_id.strip():
        raise bad_request("invalid_body", "contactListId must be a non-empty string", field="contactListId")
    if len(list_id) > MAX_LIST_ID_CHARS:
        raise bad_request("invalid_body", f"contactListId is longer than {MAX_LIST_ID_CHARS} characters",
                          field="contactListId")
    items = body.get("items")
    if not isinstance(items, list):
        raise bad_request("invalid_body", "items must be an array", field="items")
    if not items:
        raise bad_request("invalid_body", "items must not be empty", field="items")
    if len(items) > max_items:
        raise bad_request(
            "too_many_items",
            f"items has {len(items)} entries; at most {max_items} are allowed per bulk insert",
            index=max_items, field="items", reason=f"more than {max_items} items", limit=max_items,
        )
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        problems.extend(_item_problems(index, item))
        if len(problems) >= MAX_DETAILS:
            break
    if problems:
        first = problems[0]
        raise ApiError(
            400, "invalid_item",
            f"item {first['index']}: {first['field'] or 'item'}: {first['reason']}",
            index=first["index"], field=first["field"], reason=first["reason"],
            details=problems[:MAX_DETAILS],
        )
    return BulkInsert(list_id, items)


def _kind(value: object) -> str:
    """JSON type name of ``value`` for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
