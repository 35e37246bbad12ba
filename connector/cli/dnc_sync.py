"""``cxone-connector dnc sync --list NAME``: sync one DNC list with the registry's own files.

Input, one of:

* ``--full FILE [FILE ...]``: the registry's full list, one ``area code,number`` per line
  (``415,5550100``), plain text or zipped (a zip holding one or more such files, recognised
  by its first bytes, not its name). Together the files *are* the list: numbers the list
  holds that none of them names are removed.
* ``--changes FILE [FILE ...]``: change lists as CSV, ``number,action[,date]`` by default;
  ``--columns number=2,action=5,date=1`` moves the columns (1-based), ``area=N`` reads the
  number split as area code and 7 digits. Actions (any case): ``add``, ``added``, ``a``,
  ``insert``, ``new``; ``delete``, ``deleted``, ``del``, ``d``, ``remove``, ``removed``,
  ``r``. Dates: ``YYYY-MM-DD`` (a time may follow), ``YYYYMMDD`` or ``MM/DD/YYYY``. See
  :mod:`connector.core.registry_files` for which line wins.

What it writes: the difference between the files and what the DNC topic holds *for that
list*, read from the keys alone (``<list>/<E.164>``; values are not decoded) up to the high
watermarks taken at the start (:mod:`connector.kafka.topic_scan`): entries for numbers not on
the list yet, then tombstones for numbers to remove, only ever under the list's own keys, so a
number another list holds stays blocked. Legacy bare-number keys are counted and left alone.
Sets are :class:`pyroaring.BitMap64`, so a 258-million-number registry fits in a few bytes
per number.

Then, once every entry is acknowledged, the list's refresh record: a ``DncListRefresh`` under
the list's name on the compacted ``--lists-topic`` (``dnc.lists``) with the source, the
registry access date (``--as-of``, default today UTC, never later) and the counts. That is
the safe harbor's record of access, which every instance reads
(:class:`connector.kafka.dnc_refreshes.DncRefreshReader`).

Exit status: 0 synced and recorded; 1 synced and recorded, but invalid lines were skipped;
2 nothing written (bad options or files, a full list without a valid number, more than
``--max-invalid`` invalid lines, a full sync removing more than ``--max-remove-share`` of the
list, the DNC or refresh topic unreadable);
3 some entries or the refresh record were not acknowledged: **no refresh record** was
written (run the command again; it writes only what is still missing). ``--dry-run`` writes
nothing and exits as the real run would (0, 1 or 2).

Invalid lines are reported by file and line number with a reason, never with their content.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TextIO

from confluent_kafka import Consumer, KafkaException, Message

from connector.cli.produce_sample import BulkProducer, default_bootstrap, parse_overrides
from connector.config import TopicSettings
from connector.core.dnc_diff import ListKeys, SyncPlan, keys_of, plan_changes, plan_full
from connector.core.dnc_freshness import ListRefresh, refresh_to_record
from connector.core.dnc_keys import valid_list_name
from connector.core.phones import PhoneNormalizer
from connector.core.registry_files import ChangeListParser, ColumnMap, FullListParser, InvalidLines
from connector.errors import ConnectorError
from connector.kafka.topic_scan import TopicScanError, read_to_end, scan_config, start_up_marks
from connector.serde.codec import AvroCodec

EXIT_OK, EXIT_INVALID_LINES, EXIT_NOTHING_WRITTEN, EXIT_NOT_DELIVERED = 0, 1, 2, 3
#: Invalid lines listed one by one at most.
MAX_REPORTED = 1000
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
_MAX_SOURCE = 256
_PROG = "dnc sync"
_EPILOG = """\
input formats:
  --full      one 'area code,number' per line (415,5550100); plain or zip (one or more files)
  --changes   CSV number,action[,date] (--columns moves them, 1-based; area=N splits the number)
              actions, any case: add added a insert new | delete deleted del d remove removed r
              dates: YYYY-MM-DD[...], YYYYMMDD or MM/DD/YYYY; the last line of a number wins
              (dates out of order: a number both added and deleted stays added)

exit status:
  0  synced and recorded         1  synced and recorded, invalid lines skipped
  2  nothing written             3  not all acknowledged: no refresh record (run it again)
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dnc sync`` under the ``dnc`` command's subparsers."""
    defaults = TopicSettings()
    p = subparsers.add_parser(
        "sync", help="sync a DNC list with the registry's full or change files",
        description="Write the difference between registry files and what the DNC topic holds for one\n"
        "list (entries for new numbers, tombstones for numbers no longer listed; only that list's keys),\n"
        "then, once every record is acknowledged, the list's refresh record (source, --as-of date,\n"
        "counts) to the refresh topic: the safe harbor's record of registry access.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", dest="list_name", required=True, help="the DNC list synced (e.g. national)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--full", nargs="+", metavar="FILE", help="full-list files (plain or zip): the whole list")
    src.add_argument("--changes", nargs="+", metavar="FILE", help="change-list CSV files (plain or zip)")
    p.add_argument("--columns", default="number=1,action=2,date=3", metavar="SPEC",
                   help="--changes columns, 1-based: number=N,action=N[,date=N][,area=N] "
                   "(default: number=1,action=2,date=3)")
    p.add_argument("--as-of", default=None, metavar="YYYY-MM-DD",
                   help="the date the registry was accessed (the download's date; default: today, UTC)")
    p.add_argument("--source", default=None, help="what the refresh record names as the source "
                   "(default: the file names)")
    p.add_argument("--reason", default=None, help="reason stored with each new entry")
    p.add_argument("--dry-run", action="store_true", help="print the counts, write nothing")
    p.add_argument("--max-invalid", type=int, default=10_000, metavar="N",
                   help="write nothing when more than N lines are invalid (default: 10000)")
    p.add_argument("--max-remove-share", type=float, default=0.05, metavar="F",
                   help="write nothing when a full sync would remove more than this share of the list "
                   "(default: 0.05; 1 disables the guard)")
    p.add_argument("--bootstrap-servers", default=default_bootstrap(), help="Kafka bootstrap servers")
    p.add_argument("-X", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="extra librdkafka setting for the consumer and the producer (TLS, SASL, ...)")
    p.add_argument("--topic", default=defaults.dnc, help=f"the compacted DNC topic (default: {defaults.dnc})")
    p.add_argument("--lists-topic", default=defaults.dnc_lists,
                   help=f"the compacted refresh-record topic (default: {defaults.dnc_lists})")
    p.add_argument("--scan-timeout", type=float, default=60.0, metavar="S",
                   help="give up reading the DNC topic after S seconds without progress (default: 60)")
    p.add_argument("--progress-every", type=int, default=1_000_000, metavar="N",
                   help="progress on stderr every N lines or records (0: never)")
    p.add_argument("--progress-seconds", type=float, default=10.0, metavar="S",
                   help="progress on stderr at least every S seconds (0: never)")
    p.set_defaults(func=_run)


class _Usage(ConnectorError):
    """A bad option or input, or a topic that cannot be read: exit 2, nothing written."""


class _NotDelivered(ConnectorError):
    """Records were not acknowledged: exit 3, no refresh record. Running again may succeed."""

    retriable = True


class _Progress:
    """Prints ``what: N`` to stderr every ``every`` items or ``seconds`` seconds."""

    def __init__(self, what: str, every: int, seconds: float) -> None:
        self.what = what
        self._every = every
        self._seconds = seconds
        self._next_count = every if every > 0 else -1
        self._next_time = time.monotonic() + seconds

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        due_count = 0 < self._next_count <= count
        due_time = self._seconds > 0 and now >= self._next_time
        if due_count or due_time:
            while 0 < self._next_count <= count:
                self._next_count += self._every
            self._next_time = now + self._seconds
            print(f"{_PROG}: {self.what}: {count}", file=sys.stderr)


@dataclass
class _Options:
    list_name: str
    full: bool
    files: list[str]
    columns: ColumnMap
    as_of: dt.date
    source: str
    overrides: dict[str, str]


def _options(args: argparse.Namespace) -> _Options:
    """Check every option before anything is read.

    Raises:
        _Usage: saying which option is wrong.
    """
    if not valid_list_name(args.list_name):
        raise _Usage(f"--list {args.list_name!r} is not a valid list name (letters, digits, '.', '_', '-')")
    files = list(args.full or args.changes)
    try:
        columns = ColumnMap.parse(args.columns)
        overrides = parse_overrides(args.overrides)
        today = dt.datetime.now(dt.timezone.utc).date()
        as_of = dt.date.fromisoformat(args.as_of) if args.as_of else today
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    if as_of > today:
        raise _Usage(f"--as-of {as_of.isoformat()} is after today ({today.isoformat()}, UTC)")
    if not 0 < args.max_remove_share <= 1 or args.max_invalid < 0:
        raise _Usage("--max-remove-share must be in (0, 1] and --max-invalid at least 0")
    source = args.source or ",".join(os.path.basename(f) for f in files)
    return _Options(args.list_name, bool(args.full), files, columns, as_of, source[:_MAX_SOURCE], overrides)


def open_inputs(path: str, stack: ExitStack) -> Iterator[tuple[str, TextIO]]:
    """The text streams of one input: the file itself, or each file member of a zip.

    A zip is recognised by its first bytes. Its members are read in name order; each is
    checked against its CRC when it has been read to the end.

    Raises:
        OSError: the file cannot be read.
        zipfile.BadZipFile: a zip that is damaged (raised while reading a member, too, as
            can ``zlib.error`` and ``EOFError``).
    """
    with open(path, "rb") as probe:
        magic = probe.read(4)
    if magic not in _ZIP_MAGIC:
        yield path, stack.enter_context(open(path, encoding="utf-8-sig", errors="replace", newline=""))
        return
    archive = stack.enter_context(zipfile.ZipFile(path))
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        if info.is_dir():
            continue
        raw = stack.enter_context(archive.open(info))
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        yield f"{os.path.basename(path)}:{info.filename}", stack.enter_context(text)


def _read_files(opts: _Options, args: argparse.Namespace) -> tuple[FullListParser | ChangeListParser, InvalidLines]:
    """Parse every input file.

    Raises:
        _Usage: a file cannot be read or is a damaged zip.
    """
    normalise = PhoneNormalizer("US", cache_size=0).normalize
    invalid = InvalidLines(cap=MAX_REPORTED)
    progress = _Progress("lines read", args.progress_every, args.progress_seconds)
    parser: FullListParser | ChangeListParser = (
        FullListParser(normalise, invalid, progress=progress, progress_every=4096) if opts.full
        else ChangeListParser(normalise, opts.columns, invalid, progress=progress, progress_every=4096))
    for path in opts.files:
        try:
            with ExitStack() as stack:
                for name, stream in open_inputs(path, stack):
                    parser.feed(stream, name)
        except OSError as exc:
            raise _Usage(f"cannot read {path}: {exc.strerror or exc}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as exc:
            raise _Usage(f"{path} is not a readable zip: {exc}") from None
    return parser, invalid


def _scan(opts: _Options, args: argparse.Namespace) -> ListKeys:
    """What the DNC topic holds for the list, from its keys (and that the refresh topic exists).

    Raises:
        _Usage: the refresh topic is missing, or the DNC topic cannot be read (missing,
            unreachable, stalled).
    """
    keys = ListKeys(opts.list_name)
    progress = _Progress(f"records of {args.topic} scanned", args.progress_every, args.progress_seconds)
    # librdkafka's default fetch sizes: larger ones bought no speed here and cost memory
    config = {"bootstrap.servers": args.bootstrap_servers, "client.id": "cxone-connector-dnc-sync",
              **opts.overrides}

    def on_records(messages: list[Message]) -> None:
        keys.feed((m.key(), m.value() is None) for m in messages)
        progress(keys.records)

    try:
        consumer = Consumer(scan_config(config, "cxone-connector-dnc-sync"))
    except (KafkaException, ValueError, TypeError) as exc:
        raise _Usage(f"cannot create the consumer: {exc}") from None
    timeout = min(30.0, args.scan_timeout)
    try:
        try:  # before anything is written: a sync whose record cannot be written is not started
            start_up_marks(consumer, args.lists_topic, timeout)
        except TopicScanError as exc:
            raise _Usage(f"cannot read the refresh topic {args.lists_topic} ({exc}); if it is missing, "
                         "create it, compacted, with one partition (docs/topics.md)") from None
        read_to_end(consumer, args.topic, on_records, stall_timeout_s=args.scan_timeout, metadata_timeout_s=timeout)
    except TopicScanError as exc:
        raise _Usage(f"cannot read {args.topic}: {exc}") from None
    finally:
        consumer.close()
    return keys


def _plan(opts: _Options, parser: FullListParser | ChangeListParser, held: ListKeys) -> SyncPlan:
    if isinstance(parser, FullListParser):
        return plan_full(parser.numbers, held.numbers)
    added, deleted = parser.result()
    return plan_changes(added, deleted, held.numbers)


def _report_invalid(invalid: InvalidLines) -> None:
    for source, line, reason in invalid.listed:
        print(f"{_PROG}: {source} line {line}: invalid ({reason})", file=sys.stderr)
    if invalid.count > len(invalid.listed):
        print(f"{_PROG}: only the first {len(invalid.listed)} of {invalid.count} invalid lines were listed",
              file=sys.stderr)


def _check_guards(opts: _Options, args: argparse.Namespace, plan: SyncPlan, invalid: InvalidLines) -> None:
    """Refuse a sync that is more likely a wrong file than a registry change.

    Raises:
        _Usage: a full sync without a single number, too many invalid lines, or a full sync
            removing too large a share.
    """
    if opts.full and plan.after == 0:
        raise _Usage("the files hold no valid number: nothing written (an empty or wrong download?)")
    if invalid.count > args.max_invalid:
        raise _Usage(f"{invalid.count} invalid lines, more than --max-invalid {args.max_invalid}: "
                     "nothing written (is it the right file and --columns?)")
    if opts.full and plan.removal_share > args.max_remove_share:
        raise _Usage(f"would remove {len(plan.removes)} of the {plan.held} numbers of list {opts.list_name!r} "
                     f"({plan.removal_share:.1%}), more than --max-remove-share {args.max_remove_share:g}: "
                     "nothing written (a partial download, or one area code's file alone?)")


def _write(opts: _Options, args: argparse.Namespace, plan: SyncPlan, producer: BulkProducer) -> None:
    """Adds first, then tombstones (a run cut short leaves numbers blocked, never released).

    Raises:
        _NotDelivered: some records were not acknowledged.
    """
    value = AvroCodec("DncEntry").encode({"list_name": opts.list_name, "reason": args.reason,
                                          "added_at": int(time.time() * 1000), "expires_at": None})
    progress = _Progress("records written", args.progress_every, args.progress_seconds)
    written = 0
    for numbers, payload in ((plan.adds, value), (plan.removes, None)):
        for key in keys_of(opts.list_name, numbers):
            producer.produce(args.topic, key, payload)
            written += 1
            if written % 4096 == 0:
                progress(written)
    left = producer.flush(300.0)
    if producer.failed or left:
        raise _NotDelivered(f"{producer.failed + left} of {written} records NOT acknowledged "
                            f"(first error: {producer.first_error or 'flush timed out'})")


def _record(opts: _Options, args: argparse.Namespace, plan: SyncPlan, invalid: int,
            producer: BulkProducer) -> ListRefresh:
    """Write the list's refresh record once the data is acknowledged.

    Raises:
        _NotDelivered: the record was not acknowledged.
    """
    refresh = ListRefresh(opts.list_name, opts.source, opts.as_of, int(time.time() * 1000), plan.after,
                          len(plan.adds), len(plan.removes), invalid, "FULL" if opts.full else "CHANGES")
    failed = producer.failed
    producer.produce(args.lists_topic, opts.list_name.encode("ascii"),
                     AvroCodec("DncListRefresh").encode(refresh_to_record(refresh)))
    left = producer.flush(60.0)
    if producer.failed > failed or left:
        raise _NotDelivered(f"the refresh record was NOT acknowledged by {args.lists_topic} "
                            f"(first error: {producer.first_error or 'flush timed out'})")
    return refresh


def _summary(opts: _Options, parser: FullListParser | ChangeListParser, held: ListKeys, plan: SyncPlan,
             invalid: InvalidLines) -> None:
    mode = "full" if opts.full else "changes"
    print(f"{_PROG}: list {opts.list_name!r} ({mode}, {len(opts.files)} file(s), as of {opts.as_of.isoformat()}): "
          f"{parser.lines} lines read, {invalid.count} invalid")
    print(f"{_PROG}: {held.records} records of the DNC topic scanned; the list held {plan.held} numbers")
    if held.legacy or held.respelled:
        print(f"{_PROG}: left alone: {held.legacy} records with a bare-number key (legacy) and "
              f"{held.respelled} keys of this list not in E.164 (see docs/operations.md)", file=sys.stderr)
    if isinstance(parser, ChangeListParser) and not parser.in_order:
        print(f"{_PROG}: change dates are not in order: numbers both added and deleted stay added",
              file=sys.stderr)
    print(f"{_PROG}: adds={len(plan.adds)} removes={len(plan.removes)} unchanged={plan.unchanged} "
          f"invalid={invalid.count} after={plan.after}")


def _run(args: argparse.Namespace) -> int:
    try:
        opts = _options(args)
        parser, invalid = _read_files(opts, args)
        _report_invalid(invalid)
        held = _scan(opts, args)
        plan = _plan(opts, parser, held)
        _summary(opts, parser, held, plan, invalid)
        _check_guards(opts, args, plan, invalid)
    except _Usage as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_NOTHING_WRITTEN
    done = EXIT_INVALID_LINES if invalid.count else EXIT_OK
    if args.dry_run:
        print(f"{_PROG}: dry run: nothing written")
        return done
    try:
        producer = BulkProducer(args.bootstrap_servers, opts.overrides)
        _write(opts, args, plan, producer)
        refresh = _record(opts, args, plan, invalid.count, producer)
    except KafkaException as exc:  # the producer refused a record outright
        print(f"{_PROG}: producing failed: {exc}; no refresh record written", file=sys.stderr)
        return EXIT_NOT_DELIVERED
    except _NotDelivered as exc:
        print(f"{_PROG}: {exc}; no refresh record written: run the same command again", file=sys.stderr)
        return EXIT_NOT_DELIVERED
    print(f"{_PROG}: written to {args.topic}; refresh record of list {refresh.list_name!r} "
          f"(as of {refresh.as_of.isoformat()}, {refresh.numbers} numbers) written to {args.lists_topic}")
    return done
