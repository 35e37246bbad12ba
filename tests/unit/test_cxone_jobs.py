"""The job-tracking state machine, driven by frames and poll results (no sockets)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from connector.cxone.jobs import JobTracker
from connector.cxone.protocol import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    UNKNOWN,
    JobUpdate,
    v2_parse_event,
)


def tracker(deadline_s: float = 30.0, poll_interval_max_s: float = 8.0) -> JobTracker:
    return JobTracker(deadline_s=deadline_s, poll_interval_s=1.0, poll_interval_max_s=poll_interval_max_s)


def frame(job: str, status: str, progress: int | None = None) -> JobUpdate:
    update = v2_parse_event(json.dumps({
        "eventType": "outbound.contactlistitems.bulkinsert", "timestamp": "2024-01-01T00:00:00Z",
        "data": {"jobId": job, "status": status, "progress": progress}}))
    assert update is not None
    return update


def test_terminal_event_ends_job_and_unknown_jobs_are_ignored() -> None:
    t = tracker()
    t.watch("a", 0.0)
    assert t.on_update(frame("zzz", COMPLETED), 1.0) == []
    [end] = t.on_update(frame("a", COMPLETED, 100), 1.0)
    assert end.status == COMPLETED and "a" not in t
    assert t.on_update(frame("a", COMPLETED), 2.0) == []  # duplicates after the end are dropped


def test_progress_is_rate_limited_to_one_per_second_and_deduplicated() -> None:
    t = tracker()
    t.watch("a", 0.0)
    assert t.on_update(frame("a", QUEUED), 0.1) == []
    assert [u.progress for u in t.on_update(frame("a", IN_PROGRESS, 10), 0.2)] == [10]
    assert t.on_update(frame("a", IN_PROGRESS, 20), 0.5) == []  # too soon
    assert t.on_update(frame("a", IN_PROGRESS, 30), 1.1) == []  # still < 1 s after the last report
    assert [u.progress for u in t.on_update(frame("a", IN_PROGRESS, 40), 1.3)] == [40]
    assert t.on_update(frame("a", IN_PROGRESS, 40), 5.0) == []  # no change, nothing to report
    assert [u.status for u in t.on_update(frame("a", FAILED), 5.1)] == [FAILED]  # terminal never held back


def test_push_up_polls_only_as_safety_net() -> None:
    t = tracker()
    t.watch("a", 0.0)
    assert t.due_polls(5.0, push_up=True) == []
    assert t.due_polls(8.0, push_up=True) == ["a"]  # poll_interval_max_s without news
    assert t.due_polls(9.0, push_up=True) == []


def test_push_down_polls_with_backing_off_interval_and_news_resets_it() -> None:
    t = tracker()
    t.watch("a", 0.0)
    polls = [now for now in range(0, 29) if t.due_polls(float(now), push_up=False)]
    assert polls == [1, 2, 4, 8, 16, 24]  # 1, 2, 4, 8, then capped at 8
    t.on_update(frame("a", IN_PROGRESS, 50), 24.5)
    assert t.due_polls(25.0, push_up=False) == []
    assert t.due_polls(25.5, push_up=False) == ["a"]  # back to the first interval


def test_reconnect_makes_every_job_due_once() -> None:
    t = tracker()
    t.watch("a", 0.0)
    t.watch("b", 0.0)
    t.poll_all_soon(0.5)
    assert t.next_wakeup(0.5, push_up=True) == 0.0
    assert sorted(t.due_polls(0.5, push_up=True)) == ["a", "b"]
    assert t.due_polls(0.6, push_up=True) == []


def test_deadline_poll_without_news_reports_unknown() -> None:
    t = tracker(deadline_s=10.0, poll_interval_max_s=100.0)
    t.watch("a", 0.0)
    t.on_update(frame("a", IN_PROGRESS, 5), 1.0)
    assert t.next_wakeup(1.0, push_up=True) == 10.0
    assert t.due_polls(11.0, push_up=True) == ["a"]
    [end] = t.on_update(JobUpdate("a", IN_PROGRESS, 5, "poll"), 11.1)
    assert end.status == UNKNOWN and end.terminal and "a" not in t


def test_deadline_poll_with_news_keeps_following() -> None:
    t = tracker(deadline_s=10.0, poll_interval_max_s=100.0)
    t.watch("a", 0.0)
    assert t.due_polls(10.0, push_up=True) == ["a"]
    assert [u.progress for u in t.on_update(JobUpdate("a", IN_PROGRESS, 60, "poll"), 10.1)] == [60]
    assert "a" in t
    assert t.due_polls(15.0, push_up=True) == []


def test_deadline_poll_failure_reports_unknown_other_failures_back_off() -> None:
    t = tracker(deadline_s=10.0)
    t.watch("a", 0.0)
    assert t.on_poll_failed("a", 1.0, "503") == []
    assert "a" in t
    assert t.due_polls(10.0, push_up=True) == ["a"]
    [end] = t.on_poll_failed("a", 10.2, "TransportError")
    assert end.status == UNKNOWN and "poll failed" in end.detail


def test_forget_and_wakeup_with_nothing_pending() -> None:
    t = tracker()
    assert t.next_wakeup(0.0, push_up=False) is None
    t.watch("a", 0.0)
    t.forget("a")
    assert len(t) == 0 and t.pending == []


@given(st.lists(st.tuples(st.sampled_from([QUEUED, IN_PROGRESS, COMPLETED, FAILED]),
                          st.integers(0, 100), st.floats(0, 2)), max_size=40))
def test_at_most_one_terminal_report_and_progress_spacing(steps: list[tuple[str, int, float]]) -> None:
    t = tracker()
    t.watch("a", 0.0)
    now, reported = 0.0, []
    for status, progress, dt in steps:
        now += dt
        reported += [(now, u) for u in t.on_update(JobUpdate("a", status, progress), now)]
    terminal = [u for _, u in reported if u.terminal]
    assert len(terminal) <= 1
    if terminal:
        assert reported[-1][1].terminal
    times = [at for at, u in reported if u.status == IN_PROGRESS]
    assert all(b - a >= 1.0 for a, b in zip(times, times[1:], strict=False))
