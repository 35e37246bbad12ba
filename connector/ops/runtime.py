"""Process-wide runtime settings for a long-running connector process.

The garbage collector: CPython starts a young-generation collection every 700 net
allocations, and each promotion step makes an old-generation pass likelier. The connector
keeps large long-lived containers (the phone cache, the window, the DNC table's lists)
and allocates a few objects per record, so with the defaults the collector kept walking
the same long-lived objects: 16 of 26 µs per record on the event loop in the ingest
benchmark (docs/benchmarks.md). Reference cycles are rare on the hot path (records are
freed by reference counting), so collecting less often loses nothing.
"""

from __future__ import annotations

import ctypes
import gc

#: ``gc.set_threshold`` for connector processes: a young collection every 200,000 net
#: allocations instead of 700, old generations correspondingly rarer. 200,000 is above
#: what a full window and the lists in flight keep alive at once (~100,000 tracked
#: objects), so in a steady stream the young collection rarely runs at all; at 50,000 it
#: ran every ~15,000 events for ~50 ms, about 8 % of the event loop's time (6-10 % more
#: events/s at 200,000 in the ingest benchmark, session 3).
GC_THRESHOLDS = (200_000, 20, 100)
#: glibc ``mallopt`` parameter number, and glibc's initial value of it.
_M_MMAP_THRESHOLD = -3
DEFAULT_MMAP_THRESHOLD = 128 * 1024


def tune_gc() -> None:
    """Collect less often (see the module docstring). Called by ``cxone-connector run``, by the
    decode workers and by the benchmarks, which measure the connector as it runs."""
    gc.set_threshold(*GC_THRESHOLDS)


def pin_mmap_threshold(nbytes: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD)``) for the whole process.

    glibc raises the threshold (up to 32 MiB) each time a large block is freed, and with it the
    trim threshold, so after a few big temporary buffers (librdkafka fetch buffers, batch
    lists, a rebuild's serialized bitmaps) they land in the heap between the table's
    containers and the freed space, even at its top, stays resident. Fixed at glibc's own
    initial 128 KiB, every block from that size on is its own mapping, returned to the OS
    when freed. A no-op (False) where glibc is unavailable.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, nbytes))
    except (OSError, AttributeError):
        return False


def release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``), so that a bulk load's
    temporary growth does not stay in the resident set. A no-op where it is unavailable."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
