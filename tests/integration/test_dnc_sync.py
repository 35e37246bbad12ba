"""``cxone-connector dnc sync`` against the real broker: full lists, change lists, zips, dry runs,
guards, and the refresh record written only after the data is acknowledged."""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer

from connector.cli import main
from connector.core.dnc_freshness import refresh_from_record
from connector.kafka.topic_scan import read_to_end, scan_config
from connector.serde.codec import AvroCodec, read_dnc_list_name

AS_OF = "2026-11-01"


def read_all(bootstrap: str, topic: str) -> list[Message]:
    """Every record of ``topic`` up to its current end (the code under test's own reader)."""
    consumer = Consumer(scan_config({"bootstrap.servers": bootstrap}, "test-read-all"))
    out: list[Message] = []
    try:
        read_to_end(consumer, topic, out.extend, stall_timeout_s=30)
    finally:
        consumer.close()
    return out


def state(bootstrap: str, topic: str) -> dict[str, str]:
    """The table the topic describes: ``{key: list name}``, the last value per key, tombstones applied."""
    table: dict[str, str] = {}
    for m in read_all(bootstrap, topic):
        if m.value() is None:
            table.pop(m.key().decode(), None)
        else:
            table[m.key().decode()] = read_dnc_list_name(m.value())
    return table


def refreshes(bootstrap: str, topic: str) -> list[Any]:
    return [refresh_from_record(AvroCodec("DncListRefresh").decode(m.value())) for m in read_all(bootstrap, topic)]


@pytest.fixture
def topics(topic_factory: Any) -> tuple[str, str]:
    compact = {"cleanup.policy": "compact"}
    return topic_factory("dnc", partitions=3, config=compact), topic_factory("lists", config=compact)


def sync(bootstrap: str, topics: tuple[str, str], *args: str) -> int:
    return main(["dnc", "sync", "--bootstrap-servers", bootstrap, "--topic", topics[0], "--lists-topic", topics[1],
                 "--as-of", AS_OF, *args])


def national(*numbers: str) -> set[str]:
    return {f"national/+1{n}" for n in numbers}


def test_full_then_full_writes_the_difference_and_leaves_other_lists_alone(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dnc, lists = topics
    other = tmp_path / "optout.txt"
    other.write_text("+14155550101\n+14155550199\n")
    assert main(["dnc", "load", str(other), "--list", "crm-opt-out", "--bootstrap-servers", kafka_bootstrap,
                 "--topic", dnc]) == 0
    first = tmp_path / "first.txt"
    first.write_text("415,5550100\n415,5550101\n415,5550102\n212,3456789\n")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(first)) == 0
    out = capsys.readouterr().out
    assert "adds=4 removes=0 unchanged=0 invalid=0 after=4" in out
    seen = {(m.partition(), m.offset()) for m in read_all(kafka_bootstrap, dnc)}
    assert len(seen) == 2 + 4

    second = tmp_path / "second.txt"  # 5550101 and 3456789 dropped, 5550103 and 6462223344 new
    second.write_text("415,5550100\n415,5550102\n415,5550103\n646,2223344\n")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(second), "--max-remove-share", "1",
                "--source", "ftc-2026-11-01") == 0
    assert "adds=2 removes=2 unchanged=2 invalid=0 after=4" in capsys.readouterr().out

    table = state(kafka_bootstrap, dnc)
    assert {k for k, v in table.items() if v == "national"} == national(
        "4155550100", "4155550102", "4155550103", "6462223344")
    # the other list is untouched: 5550101 stays blocked by crm-opt-out although national dropped it
    assert {k for k, v in table.items() if v == "crm-opt-out"} == {"crm-opt-out/+14155550101",
                                                                   "crm-opt-out/+14155550199"}
    written = [m for m in read_all(kafka_bootstrap, dnc) if (m.partition(), m.offset()) not in seen]
    assert all(m.key().startswith(b"national/") for m in written) and len(written) == 4  # only the difference
    assert sorted(m.key().decode() for m in written if m.value() is None) == sorted(
        national("4155550101", "2123456789"))

    first_record, second_record = refreshes(kafka_bootstrap, lists)
    assert (second_record.list_name, second_record.source, second_record.as_of) == (
        "national", "ftc-2026-11-01", dt.date(2026, 11, 1))
    assert (second_record.numbers, second_record.adds, second_record.removes, second_record.mode) == (4, 2, 2, "FULL")
    assert first_record.source == "first.txt" and second_record.synced_at_ms >= first_record.synced_at_ms


def test_a_change_file_round_trips(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dnc, lists = topics
    full = tmp_path / "full.txt"
    full.write_text("415,5550100\n415,5550101\n")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(full)) == 0
    changes = tmp_path / "changes.csv"
    changes.write_text("date,phone,what\n"
                       "2026-11-01,(415) 555-0102,ADD\n"      # new
                       "2026-11-01,415-555-0100,Delete\n"     # held: tombstone
                       "2026-11-01,4155550101,add\n"          # already held: unchanged
                       "2026-11-01,4155550109,delete\n"       # not held: unchanged
                       "2026-11-02,4155550103,add\n"
                       "2026-11-03,4155550103,deleted\n")     # added then deleted: deleted
    assert sync(kafka_bootstrap, topics, "--list", "national", "--changes", str(changes),
                "--columns", "number=2,action=3,date=1", "--progress-every", "1", "--progress-seconds", "0") == 0
    captured = capsys.readouterr()
    assert "adds=1 removes=1 unchanged=3 invalid=0 after=2" in captured.out
    assert f"dnc sync: records of {dnc} scanned: 2" in captured.err  # progress, on stderr
    assert set(state(kafka_bootstrap, dnc)) == national("4155550101", "4155550102")
    record = refreshes(kafka_bootstrap, lists)[-1]
    assert (record.mode, record.numbers, record.adds, record.removes) == ("CHANGES", 2, 1, 1)


def test_zipped_input_is_recognised_by_its_bytes_and_a_damaged_zip_writes_nothing(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dnc, lists = topics
    archive = tmp_path / "registry-download.bin"  # no .zip in the name
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("415.txt", "415,5550100\r\n415,5550101\r\n")
        zf.writestr("646.txt", "646,2223344\n646,22233\n")
        zf.writestr("empty/", "")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(archive)) == 1  # one invalid line
    captured = capsys.readouterr()
    assert "registry-download.bin:646.txt line 2: invalid (format)" in captured.err
    assert "22233" not in captured.err
    assert "adds=3 removes=0 unchanged=0 invalid=1 after=3" in captured.out
    assert set(state(kafka_bootstrap, dnc)) == national("4155550100", "4155550101", "6462223344")
    assert refreshes(kafka_bootstrap, lists)[-1].invalid == 1

    damaged = tmp_path / "damaged.zip"
    data = bytearray(archive.read_bytes())
    data[60:80] = b"\xff" * 20  # inside the first member's compressed data
    damaged.write_bytes(bytes(data))
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(damaged)) == 2
    assert "damaged.zip is not a readable zip" in capsys.readouterr().err
    assert len(refreshes(kafka_bootstrap, lists)) == 1


def test_dry_run_prints_the_counts_and_writes_nothing(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dnc, lists = topics
    full = tmp_path / "full.txt"
    full.write_text("415,5550100\n415,5550101\n")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(full)) == 0
    before = [(m.key(), m.value()) for m in read_all(kafka_bootstrap, dnc)]
    full.write_text("415,5550100\n415,5550102\n415,5550103\nnot a line\n")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(full), "--dry-run",
                "--max-remove-share", "1") == 1
    out = capsys.readouterr().out
    assert "adds=2 removes=1 unchanged=1 invalid=1 after=3" in out and "dry run: nothing written" in out
    assert [(m.key(), m.value()) for m in read_all(kafka_bootstrap, dnc)] == before
    assert len(refreshes(kafka_bootstrap, lists)) == 1


def test_the_scan_ends_at_the_start_up_watermarks_despite_transaction_markers(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dnc, _ = topics
    entry = AvroCodec("DncEntry").encode({"list_name": "national", "added_at": 1_700_000_000_000})
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    for i in range(3):  # one per partition: each ends with a commit marker no consumer sees
        producer.produce(dnc, key=f"national/+1415555010{i}".encode(), value=entry, partition=i)
    producer.commit_transaction(10)
    full = tmp_path / "full.txt"
    full.write_text("415,5550100\n415,5550101\n415,5550109\n")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(full), "--dry-run",
                "--max-remove-share", "1", "--scan-timeout", "600") == 0
    out = capsys.readouterr().out
    assert "the list held 3 numbers" in out and "adds=1 removes=1 unchanged=2" in out


def test_guards_write_nothing(
    kafka_bootstrap: str, topics: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dnc, lists = topics
    full = tmp_path / "full.txt"
    full.write_text("".join(f"415,55501{i:02d}\n" for i in range(20)))
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(full)) == 0
    capsys.readouterr()
    before = len(read_all(kafka_bootstrap, dnc))
    part = tmp_path / "one-area-code.txt"
    part.write_text("415,5550100\n")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(part)) == 2
    assert re.search(r"would remove 19 of the 20 numbers of list 'national' \(95\.0%\)", capsys.readouterr().err)
    bad = tmp_path / "bad.txt"
    bad.write_text("1x\n2y\n415,5550100\n")
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(bad), "--max-invalid", "1") == 2
    assert "2 invalid lines, more than --max-invalid 1" in capsys.readouterr().err
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()  # an archive without members: no number at all
    assert sync(kafka_bootstrap, topics, "--list", "national", "--full", str(empty), "--max-remove-share", "1") == 2
    assert "the files hold no valid number" in capsys.readouterr().err
    assert len(read_all(kafka_bootstrap, dnc)) == before and len(refreshes(kafka_bootstrap, lists)) == 1


def test_unacknowledged_entries_write_no_refresh_record(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the broker refuses every batch of this topic (larger than its max.message.bytes)
    dnc = topic_factory("dnc", config={"cleanup.policy": "compact", "max.message.bytes": "16"})
    lists = topic_factory("lists", config={"cleanup.policy": "compact"})
    full = tmp_path / "full.txt"
    full.write_text("415,5550100\n")
    assert sync(kafka_bootstrap, (dnc, lists), "--list", "national", "--full", str(full)) == 3
    err = capsys.readouterr().err
    assert "1 of 1 records NOT acknowledged" in err and "no refresh record written" in err
    assert read_all(kafka_bootstrap, lists) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--list", "bad/name", "--full", "x"], "not a valid list name"),
    (["--list", "national", "--full", "x", "--as-of", "2999-01-01"], "is after today"),
    (["--list", "national", "--full", "x", "--as-of", "01/11/2026"], "Invalid isoformat"),
    (["--list", "national", "--changes", "x", "--columns", "number=1"], "at least number and action"),
    (["--list", "national", "--full", "/nonexistent/file"], "cannot read /nonexistent/file"),
])
def test_bad_options_write_nothing(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # refused before any broker is asked
    assert main(["dnc", "sync", "--bootstrap-servers", "127.0.0.1:1", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["lists", "dnc"])
def test_a_missing_topic_stops_the_sync_before_it_writes(
    missing: str, kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = topic_factory("t", config={"cleanup.policy": "compact"})
    absent = f"{existing}.no-such-topic"
    pair = (existing, absent) if missing == "lists" else (absent, existing)
    full = tmp_path / "full.txt"
    full.write_text("415,5550100\n")
    assert sync(kafka_bootstrap, pair, "--list", "national", "--full", str(full)) == 2
    expected = (f"cannot read the refresh topic {absent}" if missing == "lists"
                else f"cannot read {absent}: topic {absent} is not available")
    assert expected in capsys.readouterr().err
    assert read_all(kafka_bootstrap, existing) == []


def test_an_unreachable_broker_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full.txt"
    full.write_text("415,5550100\n")
    rc = main(["dnc", "sync", "--bootstrap-servers", "127.0.0.1:1", "--list", "national", "--full", str(full),
               "--scan-timeout", "2"])
    assert rc == 2
    assert "cannot read the refresh topic dnc.lists" in capsys.readouterr().err
