"""The pure simulator state, driven by a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simhelpers import FakeClock

from connector.simulator.exceptions import ApiError
from connector.simulator.state import TERMINAL, SimState


def contacts(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"phoneNumber": f"+1415555{start + i:04d}", "firstName": f"n{i}"} for i in range(n)]


def make(rate: float = 50.0, concurrency: int = 4, limit: int = 1_000_000) -> tuple[SimState, FakeClock]:
    clock = FakeClock()
    return SimState(clock, items_per_second=rate, concurrency=concurrency, tenant_limit=limit), clock


def test_job_progresses_at_the_configured_rate_and_lands_its_contacts() -> None:
    state, clock = make(rate=50.0)
    job = state.create_job("v2", "L1", contacts(100))
    assert job.status == "QUEUED"
    first = state.tick()
    assert [(e.status, e.progress) for e in first] == [("IN_PROGRESS", 0)]
    clock.advance(1.0)
    assert [(e.status, e.progress) for e in state.tick()] == [("IN_PROGRESS", 50)]
    assert state.lists["L1"].contacts == {}  # nothing lands before COMPLETED
    clock.advance(1.0)
    events = state.tick()
    assert [e.status for e in events] == ["COMPLETED"]
    assert events[-1].progress == 100
    assert job.status == "COMPLETED" and job.completed_at == clock.now
    assert len(state.lists["L1"].contacts) == 100
    assert state.lists["L1"].contacts["+14155550007"]["jobId"] == job.job_id


def test_a_small_job_reports_in_progress_before_its_terminal_event() -> None:
    state, clock = make(rate=1000.0)
    state.create_job("v2", "L1", contacts(3))
    state.tick()
    clock.advance(0.1)
    events = state.tick()
    assert [e.status for e in events] == ["COMPLETED"]


def test_upsert_by_phone_number_does_not_duplicate() -> None:
    state, clock = make(rate=1e6)
    state.create_job("v2", "L1", contacts(5))
    second = contacts(2)
    second[0]["firstName"] = "changed"
    state.create_job("v2", "L1", second)
    state.tick()
    clock.advance(1.0)
    state.tick()
    lst = state.lists["L1"].contacts
    assert len(lst) == 5
    assert lst["+14155550000"]["firstName"] == "changed"


def test_concurrency_keeps_later_jobs_queued() -> None:
    state, clock = make(rate=10.0, concurrency=1)
    a = state.create_job("v2", "L1", contacts(10))
    b = state.create_job("v2", "L1", contacts(10, 100))
    state.tick()
    assert (a.status, b.status) == ("IN_PROGRESS", "QUEUED")
    clock.advance(1.0)
    state.tick()
    assert a.status == "COMPLETED" and b.status == "QUEUED"
    clock.advance(0.5)
    state.tick()
    assert b.status == "IN_PROGRESS"


def test_failed_job_stops_halfway_and_lands_nothing() -> None:
    state, clock = make(rate=10.0)
    job = state.create_job("v2", "L1", contacts(10), "FAILED")
    state.tick()
    clock.advance(0.5)
    events = state.tick()
    assert events[-1].status == "FAILED" and events[-1].progress == 50
    assert job.failure_reason and state.lists["L1"].contacts == {}


def test_cancel_aborts_a_running_job_once() -> None:
    state, _ = make(rate=1.0)
    job = state.create_job("call-lists", "7", contacts(10))
    state.tick()
    cancelled, event = state.cancel_job(job.job_id)
    assert cancelled.status == "ABORTED" and event.status == "ABORTED" and cancelled.cancelled
    with pytest.raises(ApiError) as err:
        state.cancel_job(job.job_id)
    assert err.value.status == 409
    with pytest.raises(ApiError) as err:
        state.cancel_job("nope")
    assert err.value.status == 404
    assert state.tick() == []


def test_late_subscriber_gets_the_terminal_state() -> None:
    state, clock = make(rate=1e6)
    job = state.create_job("v2", "L1", contacts(1))
    assert state.current_event(job.job_id) is None  # QUEUED: nothing to report yet
    state.tick()
    clock.advance(1)
    state.tick()
    event = state.current_event(job.job_id)
    assert event is not None and event.status == "COMPLETED"
    assert event.to_json()["data"] == {"jobId": job.job_id, "status": "COMPLETED", "progress": 100,
                                       "contactListId": "L1", "itemCount": 1}


def test_idempotency_replays_and_mismatches() -> None:
    state, _ = make()
    job = state.create_job("v2", "L1", contacts(1), idempotency_key="k1", fingerprint="f1")
    assert state.find_replay("v2", "k1", "f1") is job
    assert state.find_replay("call-lists", "k1", "f1") is None  # keys are per profile
    assert state.replays["v2"] == 1
    with pytest.raises(ApiError) as err:
        state.find_replay("v2", "k1", "other")
    assert err.value.status == 422


def test_tokens_missing_unknown_expired_scope_and_profile() -> None:
    state, clock = make()
    state.issue_token("t1", "v2", "connector", ["outbound:job:read"], 10)

    def status(token: str | None, profile: Any = "v2", scope: str | None = None) -> int:
        try:
            state.authenticate(token, profile, scope)
        except ApiError as exc:
            return exc.status
        return 200

    assert status("t1", scope="outbound:job:read") == 200
    assert status(None) == 401
    assert status("bogus") == 401
    assert status("t1", profile="call-lists") == 401
    assert status("t1", scope="events:subscribe") == 403
    clock.advance(10)
    assert status("t1") == 401


def test_tenant_limit_counts_lists_pending_jobs_and_dnc() -> None:
    state, clock = make(rate=1e6, limit=5)
    state.create_job("v2", "L1", contacts(3))
    with pytest.raises(ApiError) as err:
        state.create_job("v2", "L2", contacts(3, 10))
    assert err.value.status == 400 and err.value.code == "tenant_record_limit"
    state.tick()
    clock.advance(1)
    state.tick()
    assert state.active_records() == 3
    state.create_job("v2", "L1", contacts(3))  # all upserts: nothing new
    assert state.pending_records() == 0
    assert state.add_dnc_records("g", {"15550001": None}) == 1
    with pytest.raises(ApiError):
        state.add_dnc_records("g", {"15550002": None, "15550003": None})
    assert state.dnc.expire("g", ["15550001", "15550009"]) == 1


def test_webhook_receiver_fails_the_first_n() -> None:
    state, _ = make()
    state.hooks.fail("hook", 2, 503)
    answers = [state.hooks.receive("hook", "POST", {"X-Sig": "s"}, "{}") for _ in range(3)]
    assert answers == [503, 503, 200]
    assert [d.answered_status for d in state.webhooks["hook"]] == [503, 503, 200]
    assert state.webhooks["hook"][0].headers == {"X-Sig": "s"}


def test_request_counts_and_reset() -> None:
    state, _ = make()
    state.count_request("POST /x", 202)
    state.count_request("POST /x", 202)
    state.count_request("POST /x", "dropped")
    assert state.request_counts() == {"POST /x": {"202": 2, "dropped": 1}}
    state.create_job("v2", "L1", contacts(1))
    state.reset()
    assert state.request_counts() == {} and state.jobs == {} and state.lists == {}


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=6),
    outcomes=st.lists(st.sampled_from(["COMPLETED", "FAILED", "ABORTED"]), min_size=6, max_size=6),
    steps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=40),
    concurrency=st.integers(min_value=1, max_value=4),
)
def test_event_stream_invariants(sizes: list[int], outcomes: list[Any], steps: list[float],
                                 concurrency: int) -> None:
    state, clock = make(rate=100.0, concurrency=concurrency)
    jobs = [state.create_job("v2", f"L{i}", contacts(n), outcomes[i]) for i, n in enumerate(sizes)]
    seen: dict[str, list[tuple[str, int]]] = {j.job_id: [] for j in jobs}
    for step in [*steps] + [1000.0] * (2 * len(jobs)):
        clock.advance(step)
        for event in state.tick():
            seen[event.job_id].append((event.status, event.progress))
    for job in jobs:
        history = seen[job.job_id]
        assert history[0][0] == "IN_PROGRESS"
        assert [s for s, _ in history if s in TERMINAL] == [job.outcome]
        assert history[-1][0] == job.outcome
        progresses = [p for _, p in history]
        assert progresses == sorted(progresses) and all(0 <= p <= 100 for p in progresses)
        assert job.processed <= job.item_count + 1e-6
