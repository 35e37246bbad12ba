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

import gc

#: ``gc.set_threshold`` for connector processes: a young collection every 200,000 net
#: allocations instead of 700, old generations correspondingly rarer. 200,000 is above
#: what a full window and the lists in flight keep alive at once (~100,000 tracked
#: objects), so in a steady stream the young collection rarely runs at all; at 50,000 it
#: ran every ~15,000 events for ~50 ms, about 8 % of the event loop's time (6-10 % more
#: events/s at 200,000 in the ingest benchmark, session 3).
GC_THRESHOLDS = (200_000, 20, 100)


def tune_gc() -> None:
    """Collect less often (see the module docstring). Called by ``cxone-connector run``, by the
    decode workers and by the benchmarks, which measure the connector as it runs."""
    gc.set_threshold(*GC_THRESHOLDS)

