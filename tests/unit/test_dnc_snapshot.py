"""connector.core.dnc_snapshot: the format round-trips, a damaged file never yields a table,
and every reason not to trust a snapshot is found."""

from __future__ import annotations

import dataclasses
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.dnc_snapshot import (
    SnapshotError,
    SnapshotMeta,
    TopicFacts,
    dnc_body,
    encode_snapshot,
    read_dnc_snapshot,
    untrusted_reason,
)
from connector.core.dnc_table import BARE, DncTable

META = SnapshotMeta(kind="dnc", topic="dnc.numbers", topic_id="AAAAAAAAAAAAAAAAAAAAAA", partitions=2,
                    offsets={0: 10, 1: 4}, written_at_ms=5_000_000, covered_at_ms=4_000_000, lists=["a"])
FACTS = TopicFacts("dnc.numbers", "AAAAAAAAAAAAAAAAAAAAAA", {0: (0, 12), 1: (2, 4)}, 86_400_000)
MARGIN = 60_000


def sample_table() -> DncTable:
    table = DncTable()
    table.put_many("national", "national", [14155550100 + i for i in range(0, 3000, 3)])
    table.put_many("crm-opt-out", "crm-opt-out", [14155550100, 442079460000])
    table.put_many(BARE, "internal", [4915112345678, 2**32 * 7 + 5])
    table.put_many("temp", "temp", [14155559999], expires_ms=9_000_000)
    table.put_many("national", "unreadable", [3314155550])
    return table


def snapshot_bytes(meta: SnapshotMeta = META, table: DncTable | None = None) -> bytes:
    return b"".join(encode_snapshot(meta, dnc_body(table if table is not None else sample_table())))


def same(a: DncTable, b: DncTable) -> bool:
    def dump(t: DncTable) -> list[tuple[str, str, list[tuple[int, list[int]]]]]:
        dumped = [(c, n, sorted((h, list(p)) for h, p in parts.items() if p)) for c, n, parts in t.slots()]
        return [slot for slot in dumped if slot[2]]  # an emptied list is no list
    return dump(a) == dump(b) and list(a.expiring_entries()) == list(b.expiring_entries())


def test_a_snapshot_round_trips_the_table_and_its_metadata() -> None:
    table = sample_table()
    meta, restored = read_dnc_snapshot(io.BytesIO(snapshot_bytes(table=table)).read)
    assert meta == META
    assert same(restored, table)
    assert restored.lists_of("+14155550100") == ("crm-opt-out", "national")
    assert restored.expire(9_000_000) == 1 and restored.lookup("+14155559999") is None


@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from([BARE, "a", "b"]), st.sampled_from(["a", "b", "u"]),
                          st.integers(10, 999_999_999_999_999), st.one_of(st.none(), st.integers(0, 2**62))),
                max_size=30))
def test_any_table_round_trips(entries: list[tuple[str, str, int, int | None]]) -> None:
    table = DncTable()
    for key_class, target, number, expires in entries:
        table.put_many(key_class, target, [number], expires_ms=expires)
    _, restored = read_dnc_snapshot(io.BytesIO(snapshot_bytes(table=table)).read)
    assert same(restored, table)


def test_a_truncated_snapshot_is_refused_wherever_it_is_cut() -> None:
    data = snapshot_bytes()
    for cut in sorted({*range(0, 64), *range(64, len(data), 97), len(data) - 1}):
        with pytest.raises(SnapshotError) as info:
            read_dnc_snapshot(io.BytesIO(data[:cut]).read)
        assert info.value.reason in ("truncated", "format"), cut


def test_a_flipped_bit_anywhere_is_refused() -> None:
    data = snapshot_bytes()
    for i in range(0, len(data), max(1, len(data) // 200)):
        damaged = bytearray(data)
        damaged[i] ^= 0x10
        with pytest.raises(SnapshotError) as info:
            read_dnc_snapshot(io.BytesIO(bytes(damaged)).read)
        assert info.value.reason in ("checksum", "format", "truncated"), i


def test_bytes_after_the_trailer_are_refused() -> None:
    with pytest.raises(SnapshotError, match="after its trailer"):
        read_dnc_snapshot(io.BytesIO(snapshot_bytes() + b"\0").read)


def test_another_file_is_not_a_snapshot() -> None:
    with pytest.raises(SnapshotError) as info:
        read_dnc_snapshot(io.BytesIO(b"PK\x03\x04" + b"\0" * 64).read)
    assert info.value.reason == "format"


NOW = META.covered_at_ms + 1_000


@pytest.mark.parametrize(("change", "facts", "reason"), [
    ({}, FACTS, None),
    ({"kind": "delivered"}, FACTS, "format"),
    ({"topic": "other"}, FACTS, "topic"),
    ({"topic_id": None}, FACTS, "unverifiable"),
    ({}, dataclasses.replace(FACTS, topic_id=None), "unverifiable"),
    ({}, dataclasses.replace(FACTS, delete_retention_ms=None), "unverifiable"),
    ({"topic_id": "BBBBBBBBBBBBBBBBBBBBBB"}, FACTS, "topic_id"),
    ({"partitions": 3, "offsets": {0: 10, 1: 4, 2: 0}}, FACTS, "partitions"),
    ({}, dataclasses.replace(FACTS, marks={0: (0, 12), 1: (2, 4), 2: (0, 0)}), "partitions"),
    ({"offsets": {0: 13, 1: 4}}, FACTS, "offset_past_end"),
    ({"offsets": {0: 10, 1: 1}}, FACTS, "offset_before_start"),
    ({"covered_at_ms": NOW - 86_400_000 + MARGIN - 1}, FACTS, "too_old"),
    ({"covered_at_ms": NOW - 86_400_000 + MARGIN}, FACTS, None),
    ({"covered_at_ms": NOW + MARGIN + 1}, FACTS, "too_old"),  # from the future: a clock jumped
])
def test_every_reason_not_to_trust_a_snapshot(change: dict[str, object], facts: TopicFacts,
                                              reason: str | None) -> None:
    meta = dataclasses.replace(META, **change)  # type: ignore[arg-type]
    assert untrusted_reason(meta, "dnc", facts, NOW, MARGIN) == reason


def test_the_header_survives_json() -> None:
    assert SnapshotMeta.from_json(META.to_json()) == META
    with pytest.raises(SnapshotError) as info:
        SnapshotMeta.from_json(b'{"kind": "dnc"}')
    assert info.value.reason == "format"
