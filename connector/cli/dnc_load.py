"""``cxone-connector dnc load FILE``: bulk-load a DNC file into the compacted topic.

The file holds one number per line, or CSV (the first column, or the one ``--column``
names in a header row). Every number is normalised to E.164 (:mod:`connector.core.phones`) and
written under the key of that number on the ``--list`` (``<list>/<E.164>``, for example
``internal/+14155550100``; :func:`connector.core.dnc_keys.dnc_key`) with a ``DncEntry``
value, or, with ``--remove``, a tombstone of that key: the number leaves that list only, and
stays blocked by any other list that holds it. Blank lines and lines starting with ``#``
are skipped; without ``--column``, a first row with no digit in its first cell is taken as
a header and skipped.

Invalid lines are reported on stderr with their line number and only the last 2 digits of
what they held. They do not stop the load: the valid numbers are written anyway, and the
exit status is 1 so that scripts notice. Exit status 2: the list name is invalid, or the
file or column cannot be read.

``dnc sync`` (:mod:`connector.cli.dnc_sync`) is the other subcommand of ``dnc``: it loads
the registry's own files as a difference against what the topic holds.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from connector.cli import dnc_sync
from connector.cli.produce_sample import BulkProducer, default_bootstrap, parse_overrides
from connector.core.dnc_keys import dnc_key, valid_list_name
from connector.core.phones import PhoneNormalizer, mask_phone
from connector.errors import PhoneError
from connector.serde.codec import AvroCodec

#: Invalid lines printed one by one at most; beyond that only the count is reported.
MAX_REPORTED = 1000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("dnc", help="manage the DNC topic", description="Manage the DNC topic.")
    sub = p.add_subparsers(dest="dnc_command", metavar="COMMAND", required=True)
    load = sub.add_parser(
        "load",
        help="load a DNC file into the compacted topic",
        description="Load a DNC file (one number per line, or CSV) into the compacted DNC topic, "
        "keyed by list and E.164 (<list>/<E.164>); --remove writes tombstones of that list's keys "
        "only. Invalid lines are reported with their line number (masked) and "
        "skipped; the valid ones are still loaded, and the exit status is then 1.",
    )
    load.add_argument("file", help="one number per line, or CSV; '-' reads stdin")
    load.add_argument("--remove", action="store_true",
                      help="write tombstones: remove the numbers from --list (other lists keep them)")
    load.add_argument("--list", dest="list_name", default="internal",
                      help="the DNC list: part of every key and the entries' list_name (default: internal)")
    load.add_argument("--reason", default=None, help="reason stored with each entry")
    load.add_argument("--region", default="US", help="region for national-format numbers")
    load.add_argument("--column", default=None, metavar="NAME",
                      help="CSV column holding the number (the first row is then a header)")
    load.add_argument("--bootstrap-servers", default=default_bootstrap(),
                      help="Kafka bootstrap servers (default: $CXONE_CONNECTOR__KAFKA__BOOTSTRAP_SERVERS "
                      "or 127.0.0.1:9092)")
    load.add_argument("-X", dest="overrides", action="append", metavar="KEY=VALUE",
                      help="extra librdkafka producer setting (TLS, SASL, ...); repeatable")
    load.add_argument("--topic", default="dnc.numbers", help="the compacted DNC topic")
    load.add_argument("--progress-every", type=int, default=100_000, metavar="N",
                      help="print progress to stderr every N lines (0: never)")
    load.set_defaults(func=_run)
    dnc_sync.add_parser(sub)  # the other "dnc" subcommand


class _BadColumn(Exception):
    """The ``--column`` is not in the header row."""


def iter_numbers(fh: TextIO, column: str | None) -> Iterator[tuple[int, str | None]]:
    """Yield ``(line number, raw number)`` per data row; the number is None for a row
    that lacks the column. Blank rows, ``#`` comments and a header row are skipped.

    Raises:
        _BadColumn: ``column`` is given and is not in the header row.
    """
    reader = csv.reader(fh)
    index = 0
    header_seen = False
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not header_seen:
            header_seen = True
            if column is not None:
                names = [c.lower() for c in cells]
                if column.lower() not in names:
                    raise _BadColumn(column)
                index = names.index(column.lower())
                continue
            if not any(ch.isdigit() for ch in cells[0]):
                continue  # a header such as "phone"
        yield line, cells[index] if index < len(cells) else None


def _check_list_name(name: str) -> None:
    """Check the ``--list`` value before anything is read.

    Raises:
        ValueError: ``name`` cannot be part of a DNC key.
    """
    if not valid_list_name(name):
        raise ValueError(f"--list {name!r} is not a valid list name (letters, digits, '.', '_' and '-', at most 64)")


def _run(args: argparse.Namespace) -> int:
    try:
        _check_list_name(args.list_name)
        overrides = parse_overrides(args.overrides)
        normalizer = PhoneNormalizer(args.region, cache_size=0)
    except ValueError as exc:
        print(f"dnc load: {exc}", file=sys.stderr)
        return 2
    try:
        fh: TextIO = (sys.stdin if args.file == "-"
                      else open(args.file, encoding="utf-8-sig", errors="replace", newline=""))
    except OSError as exc:
        print(f"dnc load: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    codec = AvroCodec("DncEntry")
    now_ms = int(time.time() * 1000)
    value: bytes | None = None if args.remove else codec.encode(
        {"list_name": args.list_name, "reason": args.reason, "added_at": now_ms, "expires_at": None})
    producer = BulkProducer(args.bootstrap_servers, overrides)
    rows = written = invalid = 0
    started = time.monotonic()
    try:
        with fh:
            for line, raw in iter_numbers(fh, args.column):
                rows += 1
                try:
                    if raw is None:
                        raise PhoneError("column missing on this row", reason="empty")
                    e164 = normalizer.normalize(raw)
                except PhoneError as exc:
                    invalid += 1
                    if invalid <= MAX_REPORTED:
                        shown = mask_phone(raw) if raw else "(empty)"
                        print(f"dnc load: line {line}: invalid number {shown} ({exc.reason})",
                              file=sys.stderr)
                    continue
                producer.produce(args.topic, dnc_key(args.list_name, e164), value)
                written += 1
                if args.progress_every and rows % args.progress_every == 0:
                    print(f"dnc load: {rows} rows, {written} queued, {invalid} invalid, "
                          f"{producer.delivered} delivered", file=sys.stderr)
    except _BadColumn:
        print(f"dnc load: column {args.column!r} is not in the header row", file=sys.stderr)
        producer.flush(30.0)
        return 2
    left = producer.flush(120.0)
    elapsed = time.monotonic() - started
    action = f"tombstones (list {args.list_name!r})" if args.remove else f"entries (list {args.list_name!r})"
    print(f"dnc load: {rows} rows read, {written} {action} written to {args.topic}, "
          f"{invalid} invalid, {elapsed:.1f}s")
    if invalid > MAX_REPORTED:
        print(f"dnc load: only the first {MAX_REPORTED} invalid lines were listed", file=sys.stderr)
    if producer.failed or left:
        print(f"dnc load: {producer.failed + left} records NOT delivered "
              f"(first error: {producer.first_error or 'flush timed out'})", file=sys.stderr)
        return 1
    if invalid:
        print(f"dnc load: {invalid} invalid line(s) skipped; the valid numbers were loaded", file=sys.stderr)
        return 1
    return 0
