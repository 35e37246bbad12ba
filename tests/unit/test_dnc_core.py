"""The DNC materialiser's pure core: record decisions (dnc_records) and the bootstrap,
position and current-ness rules (dnc_materialiser), fed with values and an injected clock."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.dnc_materialiser import BEGINNING, CurrencyView, Materialiser, Record, TopicChangedError
from connector.core.dnc_records import UNNAMED, DncRecordDecoder
from connector.core.dnc_table import BARE, DncTable, TableOp
from connector.core.phones import PhoneNormalizer
from connector.errors import PhoneError
from connector.serde.codec import frame, plain_schema

EOF = -191
_US = PhoneNormalizer("US", cache_size=0)
NOW_MS = 1_800_000_000_000


def normalise(spelling: str) -> str | None:
    try:
        return _US.normalize(spelling)
    except PhoneError:
        return None


def value(list_name: str, expires_at: int | None = None) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, plain_schema("DncEntry"), {
        "list_name": list_name, "reason": None, "added_at": 1, "expires_at": expires_at})
    return buf.getvalue()


class Err:
    def __init__(self, code: int) -> None:
        self._code = code

    def code(self) -> int:
        return self._code


def records(*items: tuple[bytes | None, bytes | None], partition: int = 0, first: int = 0) -> list[Record]:
    return [Record(partition, first + i, key, val) for i, (key, val) in enumerate(items)]


def decoder(**kwargs: Any) -> DncRecordDecoder:
    return DncRecordDecoder(normalise, eof_code=EOF, **kwargs)


class Plain:
    """``decode`` with each operation's numbers as a list (the C twin gives an array)."""

    def __init__(self, inner: DncRecordDecoder) -> None:
        self.inner = inner

    def decode(self, batch: list[Record], now_ms: int) -> Any:
        out = self.inner.decode(batch, now_ms)
        out.ops = [op._replace(numbers=list(op.numbers)) for op in out.ops]
        return out


def plain_decoder(**kwargs: Any) -> Plain:
    return Plain(decoder(**kwargs))


# --------------------------------------------------------------------------- records


def test_keyed_records_become_runs_of_operations_in_order() -> None:
    out = plain_decoder().decode(records(
        (b"national/+14155550100", value("national")),
        (b"national/+14155550101", value("national")),
        (b"crm-opt-out/+14155550100", value("crm-opt-out")),
        (b"national/+14155550100", None),
        (b"national/+14155550102", value("national")),
    ), NOW_MS)
    assert out.ops == [
        TableOp("national", "national", [14155550100, 14155550101]),
        TableOp("crm-opt-out", "crm-opt-out", [14155550100]),
        TableOp("national", None, [14155550100]),
        TableOp("national", "national", [14155550102]),
    ]
    assert out.records == 5 and out.ends == {0: 5} and out.dead_letters == []
    assert out.counts["upsert"] == 4 and out.counts["delete"] == 1


def test_bare_keys_take_the_list_from_the_value() -> None:
    out = plain_decoder().decode(records(
        (b"+14155550100", value("national")), (b"+14155550101", value("")), (b"+14155550100", None),
    ), NOW_MS)
    assert out.ops == [TableOp(BARE, "national", [14155550100]), TableOp(BARE, UNNAMED, [14155550101]),
                       TableOp(BARE, None, [14155550100])]


def test_a_keyed_value_naming_another_list_is_counted_and_the_key_wins() -> None:
    out = plain_decoder().decode(records((b"national/+14155550100", value("internal"))), NOW_MS)
    assert out.ops == [TableOp("national", "national", [14155550100])]
    assert out.counts["list_mismatch"] == 1


def test_a_key_in_another_spelling_is_normalised_with_the_default_region() -> None:
    out = plain_decoder().decode(records(
        (b"crm-opt-out/(415) 555-0100", value("crm-opt-out")), (b"415-555-0101", value("national")),
    ), NOW_MS)
    assert out.ops == [TableOp("crm-opt-out", "crm-opt-out", [14155550100]), TableOp(BARE, "national", [14155550101])]
    assert out.counts["respelled"] == 2 and out.dead_letters == []


def test_keys_that_name_no_number_are_dead_lettered_with_their_reason() -> None:
    batch = records(
        (None, value("x")), (b"call-me", value("x")), (b"\xff\xfe", value("x")),
        (b"bad list/+14155550100", value("x")), (b"national/+14155550103", value("national")),
    )
    out = plain_decoder().decode(batch, NOW_MS)
    assert out.ops == [TableOp("national", "national", [14155550103])]
    assert [(d.offset, d.reason) for d in out.dead_letters] == [
        (0, "missing"), (1, "not_a_number"), (2, "not_utf8"), (3, "bad_list")]
    assert all(d.error_class == "connector.core.dnc_keys.DncKeyError" for d in out.dead_letters)
    assert all("415" not in d.message for d in out.dead_letters)
    assert out.dead_letters[1].record is batch[1]
    assert out.ends == {0: 5}  # dead letters are consumed too


def test_an_unreadable_value_blocks_its_number_under_the_unreadable_list() -> None:
    out = plain_decoder(unreadable_list="unreadable").decode(records(
        (b"national/+14155550100", b"\x08ab"), (b"+14155550101", b"\x00"),
    ), NOW_MS)
    assert out.ops == [TableOp("national", "unreadable", [14155550100]), TableOp(BARE, "unreadable", [14155550101])]
    assert [(d.reason, d.error_class) for d in out.dead_letters] == [
        ("unreadable", "connector.errors.SerdeError")] * 2
    assert out.dead_letters[0].message.startswith("truncated")
    assert out.counts["unreadable"] == 2


def test_an_entry_that_expired_before_it_arrived_removes_its_key_s_entry() -> None:
    out = plain_decoder().decode(records(
        (b"temp/+14155550100", value("temp", expires_at=NOW_MS)),
        (b"temp/+14155550101", value("temp", expires_at=NOW_MS + 1)),
    ), NOW_MS)
    assert out.ops == [TableOp("temp", None, [14155550100]), TableOp("temp", "temp", [14155550101], NOW_MS + 1)]
    assert out.counts["expired"] == 1


def test_events_say_where_partitions_end_and_errors_are_handed_back() -> None:
    batch = [*records((b"a/+14155550100", value("a")), partition=1, first=7),
             Record(1, 9, None, None, Err(EOF)), Record(2, 0, None, None, Err(EOF)), Record(0, 0, None, None, Err(3))]
    out = plain_decoder().decode(batch, NOW_MS)
    assert out.ends == {1: 8} and out.eofs == {1: 9, 2: 0}
    assert [(p, e.code()) for p, e in out.errors] == [(0, 3)]
    assert out.records == 1


def test_framed_values_in_auto_format() -> None:
    out = plain_decoder(wire_format="auto").decode(records((b"+14155550100", frame(3, value("framed")))), NOW_MS)
    assert out.ops == [TableOp(BARE, "framed", [14155550100])]


keys = st.sampled_from([b"a/+14155550100", b"a/+14155550101", b"b/+14155550100", b"+14155550100",
                        b"+14155550101", b"a/(415) 555-0101", b"nonsense", b"a/+1"])
values = st.one_of(st.none(), st.sampled_from([value("a"), value("b"), value(""), b"\x08", value("a", 10),
                                               value("b", NOW_MS + 5)]))


@settings(max_examples=300)
@given(st.lists(st.tuples(keys, values), max_size=30), st.integers(1, 7))
def test_decoding_and_applying_matches_a_model_whatever_the_batching(
    items: list[tuple[bytes, bytes | None]], size: int
) -> None:
    decode = decoder(unreadable_list="u")
    table = DncTable()
    batch = records(*items)
    for i in range(0, len(batch), size):
        table.apply(decode.decode(batch[i:i + size], NOW_MS).ops)
    model: dict[tuple[str, int], str] = {}
    spelled = {b"a/(415) 555-0101": b"a/+14155550101"}
    for key, val in items:
        key = spelled.get(key, key)
        if key in (b"nonsense", b"a/+1"):
            continue
        text = key.decode()
        cls, _, digits = text.rpartition("/")
        number = int(digits[1:])
        if val is None or val == value("a", 10):  # a tombstone, or expired before it arrived
            model.pop((cls, number), None)
        elif val == b"\x08":
            model[(cls, number)] = "u"
        else:
            name = {value("a"): "a", value("b"): "b", value(""): "", value("b", NOW_MS + 5): "b"}[val]
            model[(cls, number)] = cls or name or UNNAMED
    for number in (14155550100, 14155550101):
        assert table.lists_of_int(number) == tuple(sorted({t for (_, n), t in model.items() if n == number}))


# --------------------------------------------------------------------------- the materialiser


def core(**kwargs: Any) -> Materialiser[TableOp]:
    return Materialiser(decoder(), max_stall_s=30.0, created_at=0.0, **kwargs)


def eof(partition: int, offset: int) -> Record:
    return Record(partition, offset, None, None, Err(EOF))


def test_empty_partitions_are_ready_at_once() -> None:
    m = core()
    assert m.begin({0: (0, 0), 1: (5, 5)}, now=1.0) == [(0, BEGINNING), (1, BEGINNING)]
    assert m.ready and m.ready_at == 1.0 and m.behind() == 0


def test_ready_when_every_position_reaches_its_start_up_watermark() -> None:
    m = core()
    m.begin({0: (0, 2), 1: (0, 1)}, now=0.0)
    m.on_batch(records((b"a/+14155550100", value("a")), partition=0), now=1.0, wall_ms=NOW_MS)
    assert not m.ready and m.behind() == 2
    m.on_batch(records((b"a/+14155550101", value("a")), partition=0, first=1), now=2.0, wall_ms=NOW_MS)
    assert not m.ready and m.behind() == 1
    m.on_batch(records((b"a/+14155550102", value("a")), partition=1), now=3.0, wall_ms=NOW_MS)
    assert m.ready and m.ready_at == 3.0 and m.bootstrap_records == 3
    assert m.positions() == {0: 2, 1: 1}


def test_a_commit_marker_at_the_end_is_passed_by_the_end_of_partition_event() -> None:
    m = core()
    m.begin({0: (0, 3)}, now=0.0)
    m.on_batch(records((b"a/+14155550100", value("a")), (b"a/+14155550101", value("a"))), now=1.0, wall_ms=NOW_MS)
    assert not m.ready and m.positions() == {0: 2}  # the marker at offset 2 is never delivered
    m.on_batch([eof(0, 3)], now=1.5, wall_ms=NOW_MS)
    assert m.ready and m.positions() == {0: 3}


def test_a_restored_start_reads_only_the_tail() -> None:
    m = core()
    assert m.begin({0: (0, 10), 1: (0, 4)}, now=0.0, positions={0: 8, 1: 4}) == [(0, 8), (1, 4)]
    assert not m.ready and m.behind() == 1
    m.on_batch(records((b"a/+14155550100", None), (b"a/+14155550101", value("a")), first=8), now=1, wall_ms=NOW_MS)
    assert m.ready and m.bootstrap_records == 2


def test_a_partition_added_later_is_read_from_the_beginning_and_holds_readiness() -> None:
    m = core()
    m.begin({0: (0, 0)}, now=0.0)
    assert m.ready
    assert m.on_metadata({0: (0, 0)}, now=1.0) == []
    assert m.on_metadata({0: (0, 0), 1: (0, 2)}, now=2.0) == [(1, BEGINNING)]
    assert not m.ready and not m.assess(2.0).currency.current
    assert "catching up: 1 of 2" in m.assess(2.0).currency.reason
    m.on_batch(records((b"a/+14155550100", value("a")), (b"a/+14155550101", value("a")), partition=1),
               now=3.0, wall_ms=NOW_MS)
    assert m.ready


def test_a_partition_that_disappears_means_the_topic_changed() -> None:
    m = core()
    m.begin({0: (0, 0), 1: (0, 0)}, now=0.0)
    with pytest.raises(TopicChangedError) as info:
        m.on_metadata({0: (0, 0)}, now=1.0)
    assert not info.value.retriable


def fresh(m: Materialiser[TableOp], now: float, *partitions: int) -> None:
    m.on_batch([eof(p, m.positions()[p]) for p in partitions], now=now, wall_ms=NOW_MS + int(now * 1000))


def test_current_needs_a_successful_fetch_from_every_partition_within_max_stall() -> None:
    m = core()
    view = m.assess(0.0).currency
    assert not view.current and view.not_current_since == 0.0 and "waiting for the topic" in view.reason
    m.begin({0: (0, 0), 1: (0, 0)}, now=5.0)
    assert not m.assess(5.0).currency.current  # ready, but no fetch seen yet
    fresh(m, 6.0, 0, 1)
    assert m.assess(6.0).currency.current and m.assess(6.0).currency.not_current_since is None
    fresh(m, 30.0, 0)
    assert m.assess(36.0).currency.current  # partition 1: 30 s since its fetch, not more
    verdict = m.assess(36.5).currency
    assert not verdict.current and "from 1 of 2 partition(s)" in verdict.reason
    assert verdict.not_current_since == 36.5
    assert m.assess(40.0).currency.not_current_since == 36.5  # unchanged while not current
    fresh(m, 41.0, 1)
    assert m.assess(41.0).currency.current


def test_an_error_answer_is_not_a_fetch_and_makes_its_partition_stale_at_once() -> None:
    m = core()
    m.begin({0: (0, 0), 1: (0, 0)}, now=0.0)
    fresh(m, 1.0, 0, 1)
    m.on_batch([Record(1, 0, None, None, Err(29))], now=2.0, wall_ms=NOW_MS)  # e.g. TOPIC_AUTHORIZATION_FAILED
    assert not m.assess(2.0).currency.current
    assert m.probes(2.5) == [(1, 0)]  # probed soon after the error
    assert m.probes(3.0) == []  # not again before the broker could answer
    fresh(m, 3.0, 1)
    assert m.assess(3.0).currency.current
    m.on_error(-1, now=4.0, reason="_ALL_BROKERS_DOWN")
    verdict = m.assess(4.0).currency
    assert not verdict.current and "from 2 of 2" in verdict.reason and "_ALL_BROKERS_DOWN" in verdict.reason


def test_quiet_partitions_are_probed_at_their_position() -> None:
    m = core(probe_interval_s=10.0)
    m.begin({0: (0, 1), 1: (0, 0)}, now=0.0)
    m.on_batch(records((b"a/+14155550100", value("a"))), now=1.0, wall_ms=NOW_MS)
    assert sorted(m.probes(1.0)) == [(1, 0)]  # never heard of
    assert m.probes(2.0) == []
    assert m.probes(10.5) == []
    assert sorted(m.probes(11.0)) == [(0, 1), (1, 0)]  # quiet for 10 s; probed 10 s ago


def test_a_view_nobody_refreshes_turns_not_current() -> None:
    m = core()
    m.begin({0: (0, 0)}, now=0.0)
    fresh(m, 1.0, 0)
    view: CurrencyView = m.assess(1.0)
    assert view.at(31.0).current
    late = view.at(31.5)
    assert not late.current and late.not_current_since == 31.0 and "no successful fetch reported" in late.reason


def test_a_snapshot_s_age_comes_from_the_watermarks_then_the_end_of_partition_events() -> None:
    m = core()
    m.begin({0: (0, 0), 1: (0, 0)}, now=0.0)
    assert m.covered_at_ms() is None  # unknown when the watermarks were read
    m = core()
    m.begin({0: (0, 0), 1: (0, 0)}, now=0.0, wall_ms=500)
    assert m.covered_at_ms() == 500
    m.on_batch([eof(0, 0)], now=1.0, wall_ms=1_000)
    assert m.covered_at_ms() == 500
    m.on_batch([eof(1, 0)], now=2.0, wall_ms=2_000)
    m.on_batch([eof(0, 0)], now=3.0, wall_ms=3_000)
    assert m.covered_at_ms() == 2_000
    m.on_metadata({0: (0, 0), 1: (0, 0), 2: (0, 5)}, now=4.0, wall_ms=4_000)
    assert m.covered_at_ms() == 2_000
