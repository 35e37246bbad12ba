"""connector/core/_dnc_scan.pyx: each C twin answers as its Python original."""

from __future__ import annotations

import array
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dnc_core import EOF, NOW_MS, Err, decoder, value

from connector.core import dnc_records, dnc_table
from connector.core.dnc_materialiser import Decoded, Record
from connector.core.dnc_table import TableOp, split_sorted_py

scan: Any
try:
    from connector.core import _dnc_scan as scan
except ImportError:  # a build without the extension runs the Python originals
    scan = None
needs_twins = pytest.mark.skipif(scan is None, reason="connector/core/_dnc_scan.pyx was not built")


def test_the_c_twins_were_built_and_are_the_ones_in_use() -> None:
    if os.environ.get("CXONE_ALLOW_PURE_PYTHON") == "1":
        pytest.skip("CXONE_ALLOW_PURE_PYTHON=1")
    assert scan is not None and dnc_records.NATIVE and dnc_table._dnc_scan is scan
    op = decoder().decode([Record(0, 0, b"a/+14155550100", value("a"))], NOW_MS).ops[0]
    assert isinstance(op.numbers, array.array) and op.numbers.typecode == "Q"


def comparable(out: Decoded[TableOp]) -> dict[str, Any]:
    return {
        "ops": [(o.key_class, o.target, list(o.numbers), o.expires_ms) for o in out.ops],
        "dead": [(id(d.record), d.partition, d.offset, d.error_class, d.message, d.reason) for d in out.dead_letters],
        "ends": out.ends, "eofs": out.eofs, "errors": [(p, e.code()) for p, e in out.errors],
        "records": out.records, "counts": out.counts,
    }


keys = st.one_of(
    st.sampled_from([b"a/+14155550100", b"a/+14155550101", b"b/+14155550100", b"+14155550100", b"+442079460000",
                     b"a/(415) 555-0101", b"415-555-0102", b"nonsense", b"a/+1", b"a/+0123", b"bad list/+1415",
                     b"a/+1234567890123456", b"\xff", b"", b"/+14155550100", b"a/14155550100", b"a//+14155550100"]),
    st.none(), st.binary(max_size=20),
)
values = st.one_of(st.none(), st.sampled_from([value("a"), value("b"), value(""), b"\x08", b"", value("a", 10),
                                               value("b", NOW_MS + 5), b"\x00\x00\x00\x00\x07" + value("x")]),
                   st.binary(max_size=12))
records = st.lists(st.tuples(st.integers(0, 2), keys, values, st.sampled_from([None, None, None, EOF, 3])),
                   max_size=25)


@needs_twins
@settings(max_examples=400)
@given(records, st.sampled_from(["avro", "auto"]))
def test_the_c_decoder_answers_as_the_python_one(items: list[tuple[int, bytes | None, bytes | None, int | None]],
                                                 wire_format: str) -> None:
    batch = [Record(p, i, k, v, None if code is None else Err(code)) for i, (p, k, v, code) in enumerate(items)]
    fast, slow = decoder(wire_format=wire_format), decoder(wire_format=wire_format)
    assert comparable(fast.decode(batch, NOW_MS)) == comparable(slow.decode_py(batch, NOW_MS))
    # and again, with the caches warm
    assert comparable(fast.decode(batch, NOW_MS)) == comparable(slow.decode_py(batch, NOW_MS))


@needs_twins
@given(st.lists(st.integers(0, 999_999_999_999_999), max_size=300))
def test_the_sorted_split_answers_as_the_python_one(numbers: list[int]) -> None:
    fast = scan.split_sorted(array.array("Q", numbers))
    assert {high: list(lows) for high, lows in fast.items()} == split_sorted_py(numbers)
    assert all(lows.typecode == "I" for lows in fast.values())
    assert {h: list(v) for h, v in scan.split_sorted(numbers).items()} == split_sorted_py(numbers)  # a list too
