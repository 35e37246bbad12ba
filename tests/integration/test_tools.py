"""``cxone-connector produce-sample`` and ``dnc load`` against the real broker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import consume_n

from connector.cli import main
from connector.cli.sample_data import SampleSpec, generate
from connector.serde.codec import AvroCodec, read_dnc_list_name, unframe

pytestmark = pytest.mark.kafka


# -- produce-sample ----------------------------------------------------------------------------


def test_produce_sample_avro_matches_generator(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events_topic = topic_factory("optin")
    dnc_topic = topic_factory("dnc", config={"cleanup.policy": "compact"})
    expected_path = tmp_path / "expected.json"
    rc = main(["produce-sample", "--bootstrap-servers", kafka_bootstrap, "--topic", events_topic,
               "--dnc-topic", dnc_topic, "--count", "300", "--contacts", "80", "--national-share", "0.3",
               "--messy-share", "0.2", "--invalid-share", "0.1", "--dnc-share", "0.25",
               "--opt-out-share", "0.1", "--extra-dnc", "20", "--seed", "11", "--start-ms", "1700000000000",
               "--expected-json", str(expected_path)])
    assert rc == 0
    spec = SampleSpec(count=300, contacts=80, national_share=0.3, messy_share=0.2, invalid_share=0.1,
                      dnc_share=0.25, opt_out_share=0.1, extra_dnc=20, seed=11, start_ms=1_700_000_000_000)
    data = generate(spec)
    out = capsys.readouterr().out
    assert f"300 events to {events_topic}" in out
    assert f"{len(data.dnc)} DNC entries" in out
    assert re.search(rf"expected_compliant\s+{len(data.compliant_contacts)}\b", out)

    codec = AvroCodec("ContactOptInChanged")
    msgs = consume_n(kafka_bootstrap, events_topic, 300, catch_extra=True)
    got = [(m.key().decode(), codec.decode(m.value())) for m in msgs]
    assert got == [(e.key, e.value) for e in data.events]

    dnc_msgs = consume_n(kafka_bootstrap, dnc_topic, len(data.dnc), catch_extra=True)
    assert {m.key().decode() for m in dnc_msgs} == {d.key for d in data.dnc}
    assert {read_dnc_list_name(m.value()) for m in dnc_msgs} == {"sample-dnc"}

    rows = json.loads(expected_path.read_text())
    assert {r["contact_id"] for r in rows if r["compliant"]} == data.compliant_contacts


def test_produce_sample_confluent_framing(
    kafka_bootstrap: str, topic_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    events_topic = topic_factory("optin")
    dnc_topic = topic_factory("dnc", config={"cleanup.policy": "compact"})
    rc = main(["produce-sample", "--bootstrap-servers", kafka_bootstrap, "--topic", events_topic,
               "--dnc-topic", dnc_topic, "--count", "50", "--contacts", "10", "--dnc-share", "0.5",
               "--wire-format", "confluent", "--schema-id", "3"])
    assert rc == 0
    msgs = consume_n(kafka_bootstrap, events_topic, 50, catch_extra=True)
    assert len(msgs) == 50
    codec = AvroCodec("ContactOptInChanged", wire_format="confluent", schema_id=3)
    for m in msgs:
        assert unframe(m.value())[0] == 3
        assert codec.decode(m.value())["contact_id"] == m.key().decode()
    # DNC values stay schemaless whatever the CRM wire format.
    dnc = consume_n(kafka_bootstrap, dnc_topic, 5, catch_extra=True)
    assert len(dnc) == 5 and all(read_dnc_list_name(m.value()) == "sample-dnc" for m in dnc)


def test_produce_sample_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce-sample", "--wire-format", "confluent", "--schema-registry-url", ""]) == 2
    assert "needs --schema-id" in capsys.readouterr().err
    assert main(["produce-sample", "--national-share", "2"]) == 2
    assert "national_share" in capsys.readouterr().err


# -- dnc load ----------------------------------------------------------------------------------


def test_dnc_load_reports_invalid_lines_masked_and_loads_the_rest(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = topic_factory("dnc", config={"cleanup.policy": "compact"})
    src = tmp_path / "dnc.txt"
    src.write_text(
        "phone\n"              # 1: header, skipped
        "+1 212 345 6789\n"    # 2
        "(646) 222-3344\n"     # 3
        "\n"                   # 4: blank
        "# a comment\n"        # 5
        "212-345-678\n"        # 6: too short -> invalid
        "4155550199\n"         # 7
        "call me maybe\n"      # 8: no number -> invalid
    )
    rc = main(["dnc", "load", str(src), "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
               "--list", "internal", "--reason", "complaint", "--progress-every", "2"])
    assert rc == 1
    captured = capsys.readouterr()
    assert "line 6: invalid number ***78" in captured.err
    assert "line 8: invalid number" in captured.err
    assert "212345678" not in captured.err and "212-345-678" not in captured.err
    assert "the valid numbers were loaded" in captured.err
    assert re.search(r"dnc load: 2 rows, 2 queued, 0 invalid", captured.err)  # progress
    assert "5 rows read, 3 entries" in captured.out

    msgs = consume_n(kafka_bootstrap, topic, 3, catch_extra=True)
    assert sorted(m.key().decode() for m in msgs) == [
        "internal/+12123456789", "internal/+14155550199", "internal/+16462223344"]
    codec = AvroCodec("DncEntry")
    for m in msgs:
        value = codec.decode(m.value())
        assert value["list_name"] == "internal" and value["reason"] == "complaint"
        assert value["expires_at"] is None and value["added_at"] > 1_700_000_000_000


def test_dnc_load_csv_column_and_remove(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = topic_factory("dnc", config={"cleanup.policy": "compact"})
    src = tmp_path / "dnc.csv"
    src.write_text('name,number\n"Doe, Jane",+1 (212) 345-6789\nBob,917 222 3344\n')
    rc = main(["dnc", "load", str(src), "--column", "Number", "--remove",
               "--bootstrap-servers", kafka_bootstrap, "--topic", topic])
    assert rc == 0
    assert "2 tombstones (list 'internal') written" in capsys.readouterr().out
    msgs = consume_n(kafka_bootstrap, topic, 2, catch_extra=True)
    assert sorted(m.key().decode() for m in msgs) == ["internal/+12123456789", "internal/+19172223344"]
    assert all(m.value() is None for m in msgs)


def test_dnc_load_remove_touches_only_its_own_lists_keys(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15's scenario: a number on crm-opt-out and on national, then removed from national."""
    topic = topic_factory("dnc", config={"cleanup.policy": "compact"})
    src = tmp_path / "a.txt"
    src.write_text("+12123456789\n")
    common = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic]
    assert main(["dnc", "load", str(src), "--list", "crm-opt-out", *common]) == 0
    assert main(["dnc", "load", str(src), "--list", "national", *common]) == 0
    assert main(["dnc", "load", str(src), "--list", "national", "--remove", *common]) == 0
    msgs = consume_n(kafka_bootstrap, topic, 3, catch_extra=True)
    written = [(m.key().decode(), None if m.value() is None else read_dnc_list_name(m.value())) for m in msgs]
    assert written == [("crm-opt-out/+12123456789", "crm-opt-out"), ("national/+12123456789", "national"),
                       ("national/+12123456789", None)]


def test_dnc_load_rejects_an_invalid_list_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.txt"
    src.write_text("+12123456789\n")
    assert main(["dnc", "load", str(src), "--list", "bad/list", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert "not a valid list name" in capsys.readouterr().err


def test_dnc_load_missing_file_or_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dnc", "load", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err
    src = tmp_path / "x.csv"
    src.write_text("a,b\n1,2\n")
    # The column check fails before anything is produced, so no broker is needed.
    assert main(["dnc", "load", str(src), "--column", "phone", "--topic", "unused",
                 "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert "column 'phone' is not in the header row" in capsys.readouterr().err
