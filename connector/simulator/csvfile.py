"""Decoding and checking a ``call-lists`` upload file (base64 of a UTF-8 CSV). Pure.

CXone strips formatting from phone numbers and keeps its own canonical form; the simulator
keeps the digits only (``+1 (415) 555-1001`` becomes ``14155551001``).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from dataclasses import dataclass

from connector.simulator.exceptions import bad_request

_NON_DIGITS = re.compile(r"[^0-9]")


@dataclass(frozen=True)
class Record:
    """One row of an upload file."""

    external_id: str
    phone: str
    fields: dict[str, str]


def canonical_phone(raw: str) -> str:
    """The digits of ``raw``, as CXone stores a phone number.

    Raises:
        ValueError: fewer than 2 or more than 15 digits remain.
    """
    digits = _NON_DIGITS.sub("", raw)
    if not 2 <= len(digits) <= 15:
        raise ValueError(f"phone number must have 2 to 15 digits, found {len(digits)}")
    return digits


def decode_file(list_file: object, max_bytes: int) -> str:
    """Base64 → bytes → UTF-8 text, enforcing the file size limit.

    Raises:
        ApiError: 400 ``invalid_file`` (not a string, not base64, not UTF-8, empty) or
            ``file_too_large`` (decoded size over ``max_bytes``).
    """
    if not isinstance(list_file, str):
        raise bad_request("invalid_file", "listFile must be a base64 string", field="listFile")
    compact = "".join(list_file.split()) if any(c.isspace() for c in list_file[:200]) else list_file
    # Decoded size is known before decoding: refuse huge files cheaply.
    approx = len(compact) * 3 // 4 - compact[-2:].count("=")
    if approx > max_bytes:
        raise bad_request("file_too_large",
                          f"listFile decodes to {approx} bytes; at most {max_bytes} allowed",
                          field="listFile", limit=max_bytes)
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("invalid_file", "listFile is not valid base64", field="listFile") from None
    if not raw:
        raise bad_request("invalid_file", "listFile is empty", field="listFile")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise bad_request("invalid_file", f"listFile is not UTF-8 (byte {exc.start})",
                          field="listFile") from None


def parse_records(
    text: str, external_id_column: str, phone_column: str, max_records: int, max_record_chars: int
) -> list[Record]:
    """Parse the CSV: a header row, then one record per row.

    Raises:
        ApiError: 400 ``invalid_file`` (bad CSV, missing columns, bad row, naming the row),
            ``too_many_records`` (over ``max_records``) or ``record_too_long``.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise bad_request("invalid_file", "the CSV has no header row", field="listFile")
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise bad_request("invalid_file", "the CSV header repeats a column name", field="listFile")
        for column in (external_id_column, phone_column):
            if column not in header:
                raise bad_request("invalid_file", f"the CSV has no column {column!r}", field="listFile",
                                  column=column)
        ext_at, phone_at = header.index(external_id_column), header.index(phone_column)
        records: list[Record] = []
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(records) >= max_records:
                raise bad_request("too_many_records",
                                  f"the file has more than {max_records} records",
                                  limit=max_records, row=line)
            if len(row) != len(header):
                raise bad_request("invalid_file",
                                  f"row {line} has {len(row)} columns, the header {len(header)}", row=line)
            if sum(len(c) for c in row) + len(row) - 1 > max_record_chars:
                raise bad_request("record_too_long",
                                  f"row {line} is longer than {max_record_chars} characters", row=line,
                                  limit=max_record_chars)
            external_id = row[ext_at].strip()
            if not external_id:
                raise bad_request("invalid_file", f"row {line} has an empty {external_id_column!r}", row=line)
            try:
                phone = canonical_phone(row[phone_at])
            except ValueError as exc:
                raise bad_request("invalid_file", f"row {line}: {exc}", row=line,
                                  column=phone_column) from None
            records.append(Record(external_id, phone, dict(zip(header, row, strict=True))))
    except csv.Error as exc:
        raise bad_request("invalid_file", f"not valid CSV (line {reader.line_num}): {exc}",
                          field="listFile") from None
    if not records:
        raise bad_request("invalid_file", "the CSV has no records", field="listFile")
    return records
