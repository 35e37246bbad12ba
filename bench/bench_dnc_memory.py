"""DNC table memory and load rate against a plain Python ``set`` of E.164 strings.

Builds N synthetic numbers (default 10,000,000): 90 % US numbers, ``+1 NPA NXX XXXX`` in
300 area codes with 400 assigned exchanges each, and 10 % in the mobile ranges of the UK,
Germany, France and India.
It measures, in the same run:

- ``DncTable``: resident memory growth (RSS delta) per number, the malloc heap growth (glibc),
  the table's own estimate, the serialized size, and the ``add_many`` rate;
- a Python ``set`` of the same numbers as E.164 strings: RSS delta per number, and its
  build rate;

then prints the ratios. Target: at most 4 bytes per number for the table.

Usage: ``python bench/bench_dnc_memory.py [--count N] [--seed S] [--foreign-share F] [--skip-set]``
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import sys
import time
from collections.abc import Iterator
from itertools import repeat

from connector.core.dnc_table import DncTable
from connector.ops.runtime import release_free_heap

TARGET_BYTES_PER_NUMBER = 4.0
CHUNK = 65_536

#: Other countries' mobile ranges: (country code, national digits, leading national digits).
_OTHER_RANGES = [
    (44, 10, range(71, 80)),  # UK mobile: +44 7x xxxx xxxx
    (49, 11, range(150, 180)),  # DE mobile: +49 15x/16x/17x xxxxxxxx
    (33, 9, range(6, 8)),  # FR mobile: +33 6/7 xx xx xx xx
    (91, 10, range(6, 10)),  # IN mobile: +91 [6-9]xxxxxxxxx
]
#: NANPA leaves part of each area code's 792 usable exchanges unassigned; use 400 per code.
_EXCHANGES_PER_AREA_CODE = 400


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def heap_in_use() -> int | None:
    """Bytes glibc malloc has handed out and not got back, or None off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                         "uordblks", "fordblks", "keepcost")
        ]

    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


def synthetic_numbers(
    count: int, seed: int, area_codes: int = 300, foreign_share: float = 0.1
) -> Iterator[list[int]]:
    """Yield ``count`` synthetic E.164 numbers (as ints of their digits) in chunks.

    Most are US numbers in ``area_codes`` area codes (some much busier than others), each
    with :data:`_EXCHANGES_PER_AREA_CODE` assigned exchanges; ``foreign_share`` of them are
    mobile numbers of the UK, Germany, France and India, spread thinly over wide ranges (the
    costly case for a compressed set). Duplicates are possible, as in a real feed.
    """
    rng = random.Random(seed)
    npas = rng.sample([n for n in range(201, 990) if n % 100 != 11], area_codes)
    exchanges = {npa: rng.sample(range(200, 1000), _EXCHANGES_PER_AREA_CODE) for npa in npas}
    made = 0
    while made < count:
        size = min(CHUNK, count - made)
        chunk: list[int] = []
        for _ in range(size):
            if rng.random() >= foreign_share:
                npa = npas[int(rng.random() ** 2 * area_codes)]
                nxx = rng.choice(exchanges[npa])
                chunk.append(10_000_000_000 + npa * 10_000_000 + nxx * 10_000 + rng.randrange(10_000))
            else:
                cc, digits, leads = rng.choice(_OTHER_RANGES)
                lead = rng.choice(leads)
                rest = digits - len(str(lead))
                chunk.append(cc * 10**digits + lead * 10**rest + rng.randrange(10**rest))
        made += size
        yield chunk


def bench_table(count: int, seed: int, foreign: float) -> tuple[DncTable, int, int | None, float]:
    gc.collect()
    before = rss_bytes()
    heap_before = heap_in_use()
    table = DncTable()
    elapsed = 0.0
    for chunk in synthetic_numbers(count, seed, foreign_share=foreign):
        start = time.perf_counter()
        # A lazy iterable, as the materialiser passes: no per-chunk list of tuples stays behind.
        table.add_many(zip(chunk, repeat("national")))
        elapsed += time.perf_counter() - start
    start = time.perf_counter()
    table.compact(release_free_heap)
    elapsed += time.perf_counter() - start
    del chunk
    gc.collect()
    heap_after = heap_in_use()
    heap = None if heap_before is None or heap_after is None else heap_after - heap_before
    return table, rss_bytes() - before, heap, elapsed


def bench_set(count: int, seed: int, foreign: float) -> tuple[set[str], int, float]:
    gc.collect()
    before = rss_bytes()
    numbers: set[str] = set()
    elapsed = 0.0
    for chunk in synthetic_numbers(count, seed, foreign_share=foreign):
        start = time.perf_counter()
        numbers.update([f"+{n}" for n in chunk])
        elapsed += time.perf_counter() - start
    del chunk
    gc.collect()
    return numbers, rss_bytes() - before, elapsed


def bench_lookups(table: DncTable, seed: int, foreign: float, count: int = 1_000_000) -> float:
    """Look-ups per second of E.164 strings, about half of them blocked."""
    hits = next(synthetic_numbers(CHUNK, seed, foreign_share=foreign))
    rng = random.Random(seed + 1)
    queries = [f"+{rng.choice(hits) if i % 2 else rng.choice(hits) + 1}" for i in range(count)]
    lookup = table.lookup
    start = time.perf_counter()
    blocked = sum(1 for q in queries if lookup(q) is not None)
    elapsed = time.perf_counter() - start
    assert blocked >= count // 2
    return count / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000_000, help="synthetic numbers to load")
    parser.add_argument("--seed", type=int, default=20240115)
    parser.add_argument("--foreign-share", type=float, default=0.1, help="share of non-US numbers")
    parser.add_argument("--skip-set", action="store_true", help="do not build the Python set baseline")
    args = parser.parse_args(argv)

    print(
        f"DNC memory benchmark: {args.count:,} synthetic numbers, {args.foreign_share:.0%} non-US"
        f" (seed {args.seed})",
        flush=True,
    )
    table, table_rss, table_heap, table_s = bench_table(args.count, args.seed, args.foreign_share)
    distinct = len(table)
    table_per = table_rss / distinct
    estimate_per = table.memory_bytes() / distinct
    serialized_per = table.serialized_bytes() / distinct
    print(f"distinct numbers:          {distinct:,}")
    print(f"DncTable RSS delta:        {table_rss / 2**20:8.1f} MiB  {table_per:6.2f} B/number")
    if table_heap is not None:
        heap_per = table_heap / distinct
        print(f"DncTable malloc heap:      {table_heap / 2**20:8.1f} MiB  {heap_per:6.2f} B/number")
    print(f"DncTable own estimate:     {estimate_per:6.2f} B/number")
    print(f"DncTable serialized:       {serialized_per:6.2f} B/number")
    print(f"DncTable add_many rate:    {args.count / table_s:,.0f} numbers/s")
    lookups = bench_lookups(table, args.seed, args.foreign_share)
    print(f"DncTable lookup rate:      {lookups:,.0f} lookups/s (E.164 strings)")

    status = table_per <= TARGET_BYTES_PER_NUMBER
    if not args.skip_set:
        del table
        gc.collect()
        numbers, set_rss, set_s = bench_set(args.count, args.seed, args.foreign_share)
        set_per = set_rss / len(numbers)
        print(f"set[str] RSS delta:        {set_rss / 2**20:8.1f} MiB  {set_per:6.2f} B/number")
        print(f"set[str] build rate:       {args.count / set_s:,.0f} numbers/s")
        print(f"ratio memory set/DncTable: {set_per / table_per:6.1f}x smaller")
        print(f"ratio rate DncTable/set:   {set_s / table_s:6.2f}x")
    verdict = "met" if status else "MISSED"
    print(f"target <= {TARGET_BYTES_PER_NUMBER} B/number: {verdict} ({table_per:.2f})")
    return 0 if status else 1


if __name__ == "__main__":
    sys.exit(main())
