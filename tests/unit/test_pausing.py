"""connector.core.pausing: the consumer's pause decisions, fed with values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.core.pausing import PausingManager

A, B, C = ("t", 0), ("t", 1), ("t", 2)


def test_loop_pauses_and_flow_pauses_are_kept_apart() -> None:
    pm = PausingManager(max_pending=4, hold_s=5.0)
    pm.assign(frozenset({A, B}))
    pm.pause([A])
    assert pm.changes() == ([A], [])
    pm.flow(4)  # the loop fell behind: everything pauses
    assert pm.flow_paused and pm.changes() == ([B], [])
    pm.flow(2)  # caught up to half: the flow pause ends, the loop's pause of A stays
    assert not pm.flow_paused and pm.changes() == ([], [B])
    pm.resume(None)
    assert pm.changes() == ([], [A])


def test_pause_all_covers_partitions_assigned_later_and_revoked_ones_are_forgotten() -> None:
    pm = PausingManager(max_pending=4, hold_s=5.0)
    pm.assign(frozenset({A}))
    pm.pause(None)
    assert pm.paused_all and pm.changes() == ([A], [])
    pm.assign(frozenset({A, B}))
    assert pm.changes() == ([B], [])
    pm.assign(frozenset({B}))  # A revoked: nothing to resume for it
    assert pm.changes() == ([], [])
    pm.resume(None)
    assert pm.changes() == ([], [B])


def test_the_thread_holds_first_then_pauses_after_hold_s() -> None:
    pm = PausingManager(max_pending=2, hold_s=5.0)
    assert not pm.hold(1, 0.0)
    assert pm.hold(2, 10.0) and pm.hold(3, 14.9)
    assert not pm.hold(3, 15.0)  # behind for hold_s: pause instead
    pm.flow(3)
    assert not pm.hold(3, 16.0)  # no holding during a flow pause
    pm.flow(0)  # caught up: the flow pause ends
    assert not pm.hold(0, 17.0) and pm.hold(2, 18.0)  # a new streak begins


@given(st.lists(st.tuples(st.sampled_from(["pause", "resume", "assign", "flow"]),
                          st.one_of(st.none(), st.sets(st.sampled_from([A, B, C]))),
                          st.integers(0, 8)), max_size=40))
def test_what_is_applied_always_equals_what_is_wanted(steps: list[tuple[str, object, int]]) -> None:
    pm = PausingManager(max_pending=4, hold_s=1.0)
    applied: set[tuple[str, int]] = set()
    assignment: frozenset[tuple[str, int]] = frozenset()
    for op, tps, n in steps:
        if op == "pause":
            pm.pause(tps)  # type: ignore[arg-type]
        elif op == "resume":
            pm.resume(tps)  # type: ignore[arg-type]
        elif op == "assign":
            assignment = frozenset(tps or ())  # type: ignore[arg-type]
            pm.assign(assignment)
            applied &= assignment
        else:
            pm.flow(n)
        to_pause, to_resume = pm.changes()
        assert not set(to_pause) & applied and set(to_resume) <= applied
        applied = (applied | set(to_pause)) - set(to_resume)
        assert applied <= assignment
    assert pm.changes() == ([], [])  # nothing left to apply
