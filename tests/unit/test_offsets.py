"""Unit and property tests for connector.core.offsets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.models import SourceRef
from connector.core.offsets import OffsetTracker

TP0 = ("in", 0)
TP1 = ("in", 1)


def ref(tp: tuple[str, int], offset: int) -> SourceRef:
    return SourceRef(tp[0], tp[1], offset)


def test_commits_only_the_settled_prefix() -> None:
    tracker = OffsetTracker(100)
    for off in range(5):
        tracker.track(TP0, off)
    assert tracker.committable() == {}
    tracker.settle(ref(TP0, 1))
    tracker.settle(ref(TP0, 2))
    assert tracker.committable() == {}  # offset 0 still unsettled
    tracker.settle(ref(TP0, 0))
    assert tracker.committable() == {TP0: 3}
    assert tracker.unsettled == 2
    tracker.settle_many([ref(TP0, 4), ref(TP0, 3)])
    assert tracker.committable() == {TP0: 5}
    assert tracker.unsettled == 0


def test_gaps_in_offsets_do_not_hold_the_commit() -> None:
    tracker = OffsetTracker(100)
    for off in (10, 11, 15, 20):  # compaction gaps and transaction markers
        tracker.track(TP0, off)
    tracker.settle_many([ref(TP0, 10), ref(TP0, 11), ref(TP0, 15)])
    assert tracker.committable() == {TP0: 16}
    tracker.settle(ref(TP0, 20))
    assert tracker.committable() == {TP0: 21}


def test_mark_committed_hides_unchanged_partitions() -> None:
    tracker = OffsetTracker(100)
    tracker.track(TP0, 0)
    tracker.track(TP1, 0)
    tracker.settle(ref(TP0, 0))
    tracker.settle(ref(TP1, 0))
    assert tracker.committable() == {TP0: 1, TP1: 1}
    tracker.mark_committed({TP0: 1})
    assert tracker.committable() == {TP1: 1}
    tracker.mark_committed({TP1: 1, TP0: 0})  # a lower mark never goes back
    assert tracker.committable() == {}
    tracker.track(TP0, 1)
    tracker.settle(ref(TP0, 1))
    assert tracker.committable() == {TP0: 2}


def test_unknown_and_duplicate_settles_are_ignored() -> None:
    tracker = OffsetTracker(100)
    tracker.track(TP0, 0)
    tracker.track(TP0, 1)
    tracker.settle(ref(TP1, 0))
    tracker.settle(ref(TP0, 7))
    tracker.settle(ref(TP0, 1))
    tracker.settle(ref(TP0, 1))
    assert tracker.unsettled == 1
    assert tracker.partition_unsettled(TP0) == 1
    assert tracker.committable() == {}


def test_redelivered_offsets_are_ignored() -> None:
    tracker = OffsetTracker(100)
    tracker.track(TP0, 0)
    tracker.track(TP0, 1)
    tracker.track(TP0, 1)
    tracker.track(TP0, 0)
    assert tracker.unsettled == 2


def test_revoke_forgets_partition() -> None:
    tracker = OffsetTracker(100)
    for off in range(3):
        tracker.track(TP0, off)
        tracker.track(TP1, off)
    tracker.settle(ref(TP0, 0))
    tracker.mark_committed({TP0: 1})
    tracker.revoke([TP0])
    assert tracker.unsettled == 3
    assert tracker.partition_unsettled(TP0) == 0
    tracker.settle(ref(TP0, 1))  # late settle of a revoked record: ignored
    assert tracker.committable() == {}
    # Re-assigned later: starts afresh, and the old committed mark is gone.
    tracker.track(TP0, 1)
    tracker.settle(ref(TP0, 1))
    assert tracker.committable() == {TP0: 2}
    tracker.revoke([("other", 9)])


def test_pause_and_resume_hysteresis() -> None:
    tracker = OffsetTracker(10)
    for off in range(9):
        tracker.track(TP0, off)
    assert not tracker.over_limit and not tracker.under_resume_mark
    tracker.track(TP0, 9)
    assert tracker.over_limit
    tracker.settle(ref(TP0, 0))
    assert not tracker.over_limit and not tracker.under_resume_mark  # 9: between the marks
    tracker.settle(ref(TP0, 1))
    assert tracker.under_resume_mark  # 8 == 80 %
    assert tracker.max_unsettled == 10


def test_bad_limit() -> None:
    with pytest.raises(ValueError):
        OffsetTracker(0)


def test_200k_unsettled_then_settled_out_of_order() -> None:
    tracker = OffsetTracker(200_000)
    n = 200_000
    for off in range(n):
        tracker.track(TP0, off)
    assert tracker.over_limit
    # Settle the odd offsets first, then the even ones: the commit jumps once at the end.
    tracker.settle_many(ref(TP0, off) for off in range(1, n, 2))
    assert tracker.committable() == {}
    tracker.settle_many(ref(TP0, off) for off in range(n - 2, -1, -2))
    assert tracker.committable() == {TP0: n}
    assert tracker.unsettled == 0 and tracker.under_resume_mark


@settings(max_examples=300, deadline=None)
@given(
    counts=st.tuples(st.integers(0, 30), st.integers(0, 30)),
    gaps=st.lists(st.integers(1, 3), min_size=60, max_size=60),
    picks=st.lists(st.integers(0, 2**16), min_size=120, max_size=120),
)
def test_committable_never_passes_an_unsettled_offset(
    counts: tuple[int, int], gaps: list[int], picks: list[int]
) -> None:
    tracker = OffsetTracker(1000)
    tps = [TP0, TP1]
    # Offsets per partition, increasing with gaps.
    offsets: dict[tuple[str, int], list[int]] = {}
    for i, tp in enumerate(tps):
        seq, cur = [], 0
        for g in gaps[i * 30 : i * 30 + counts[i]]:
            cur += g
            seq.append(cur)
        offsets[tp] = seq
    # Random interleaving of track and settle: settle only what was tracked.
    tracked: dict[tuple[str, int], int] = {tp: 0 for tp in tps}
    settled: set[tuple[tuple[str, int], int]] = set()
    committed: dict[tuple[str, int], int] = {}
    total = sum(counts)
    step = 0
    while len(settled) < total:
        pick = picks[step]
        step += 1
        can_track = [tp for tp in tps if tracked[tp] < len(offsets[tp])]
        can_settle = [
            (tp, o) for tp in tps for o in offsets[tp][: tracked[tp]] if (tp, o) not in settled
        ]
        choices = (["track"] if can_track else []) + (["settle"] if can_settle else [])
        action = choices[pick % len(choices)]
        if action == "track":
            tp = can_track[(pick >> 1) % len(can_track)]
            tracker.track(tp, offsets[tp][tracked[tp]])
            tracked[tp] += 1
        else:
            tp, off = can_settle[(pick >> 1) % len(can_settle)]
            tracker.settle(ref(tp, off))
            settled.add((tp, off))
        result = tracker.committable()
        for tp, nxt in result.items():
            # Every tracked offset below the committed one is settled...
            assert all((tp, o) in settled for o in offsets[tp][: tracked[tp]] if o < nxt)
            # ...it never reaches past an unsettled one, and never goes backwards.
            assert nxt > committed.get(tp, -1)
        if (pick >> 12) & 1:
            tracker.mark_committed(result)
            committed.update(result)
        expected_unsettled = sum(tracked.values()) - len(settled)
        assert tracker.unsettled == expected_unsettled
    # Everything settled: the commit reaches the end of each partition.
    for tp in tps:
        if offsets[tp]:
            final = {**committed, **tracker.committable()}
            assert final[tp] == offsets[tp][-1] + 1


@given(
    lists=st.lists(st.lists(st.integers(0, 60), max_size=12), max_size=6),
    settle=st.lists(st.integers(0, 60), max_size=30),
)
def test_track_run_is_track_record_by_record(lists: list[list[int]], settle: list[int]) -> None:
    """Runs in consume order, re-deliveries and out-of-order offsets included: the same state."""
    one, runs = OffsetTracker(1000), OffsetTracker(1000)
    for offsets in lists:
        for offset in offsets:
            one.track(TP0, offset)
        runs.track_run(TP0, offsets)
        assert (runs.unsettled, runs.committable()) == (one.unsettled, one.committable())
    refs = [SourceRef(*TP0, offset) for offset in settle]
    one.settle_many(refs)
    runs.settle_many(refs)
    assert (runs.unsettled, runs.committable()) == (one.unsettled, one.committable())
    assert runs.partition_unsettled(TP0) == one.partition_unsettled(TP0)


@given(
    tracked=st.lists(st.tuples(st.sampled_from([TP0, TP1, ("other", 0)]), st.integers(0, 40)), max_size=60),
    rounds=st.lists(st.lists(st.tuples(st.sampled_from([TP0, TP1, ("gone", 3)]), st.integers(0, 45)),
                             max_size=25), max_size=4),
)
def test_settle_offsets_is_settle_many_grouped_by_partition(
    tracked: list[tuple[tuple[str, int], int]], rounds: list[list[tuple[tuple[str, int], int]]],
) -> None:
    """Unknown partitions, untracked, repeated and already settled offsets included: the same state."""
    from connector.core.models import offsets_by_partition

    one, grouped = OffsetTracker(1000), OffsetTracker(1000)
    for tp, offset in tracked:
        one.track(tp, offset)
        grouped.track(tp, offset)
    for settling in rounds:
        refs = [SourceRef(*tp, offset) for tp, offset in settling]
        one.settle_many(refs)
        grouped.settle_offsets(offsets_by_partition(refs))
        assert (grouped.unsettled, grouped.committable()) == (one.unsettled, one.committable())
        for tp in (TP0, TP1, ("other", 0)):
            assert grouped.partition_unsettled(tp) == one.partition_unsettled(tp)
