"""Fault decisions with an injected clock and a seeded generator."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from simhelpers import FakeClock

from connector.simulator.config import (
    ConnectionFaults,
    DncFaults,
    ErrorFaults,
    FaultSettings,
    JobFaults,
    LatencyFaults,
    RateLimitFaults,
    UploadFaults,
)
from connector.simulator.faults import FaultInjector, TokenBucket, draw_latency


def test_token_bucket_allows_a_burst_then_refills() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == 0.5  # one token takes half a second at 2/s
    clock.advance(0.5)
    assert bucket.take() == 0.0
    clock.advance(100)
    assert [bucket.take() == 0.0 for _ in range(4)] == [True, True, True, False]  # never above burst


def test_no_faults_by_default() -> None:
    inj = FaultInjector(FaultSettings())
    decisions = {inj.decide("/api/v2/outbound/contactlistitems/bulkinsert").action for _ in range(200)}
    assert decisions == {"pass"}
    assert {inj.job_outcome() for _ in range(100)} == {"COMPLETED"}
    assert inj.token_lifetime(3600) == 3600


def test_rate_limit_with_and_without_retry_after() -> None:
    clock = FakeClock(0.0)
    inj = FaultInjector(FaultSettings(rate_limit=RateLimitFaults(enabled=True, requests_per_second=0.5,
                                                                 burst=1)), clock=clock)
    assert inj.decide("/x").action == "pass"
    limited = inj.decide("/x")
    assert (limited.action, limited.status, limited.retry_after_s) == ("rate_limit", 429, 2)
    inj.update(FaultSettings(rate_limit=RateLimitFaults(enabled=True, requests_per_second=0.5, burst=1,
                                                        retry_after=False)))
    assert inj.decide("/x").action == "pass"  # new settings, new full bucket
    limited = inj.decide("/x")
    assert limited.status == 429 and limited.retry_after_s is None


def test_errors_drops_hangs_and_paths() -> None:
    settings = FaultSettings(errors=ErrorFaults(rate=1.0, statuses=(502,)), paths=("/api/v2/outbound",))
    inj = FaultInjector(settings)
    d = inj.decide("/api/v2/outbound/jobs/1")
    assert (d.action, d.status) == ("error", 502)
    assert inj.decide("/api/v2/oauth2/token").action == "pass"  # outside the configured paths
    assert inj.decide("/_sim/jobs").action == "pass"  # inspection is never faulted
    inj.update(FaultSettings(connections=ConnectionFaults(drop_rate=1.0)))
    assert inj.decide("/auth/token").action == "drop"
    inj.update(FaultSettings(connections=ConnectionFaults(hang_rate=1.0)))
    assert inj.decide("/auth/token").action == "hang"


def test_error_fraction_is_roughly_the_configured_rate_and_repeatable() -> None:
    settings = FaultSettings(seed=7, errors=ErrorFaults(rate=0.3))
    a = [FaultInjector(settings).decide("/x").action for _ in range(1)]
    inj1, inj2 = FaultInjector(settings), FaultInjector(settings)
    run1 = [inj1.decide("/x").action for _ in range(2000)]
    run2 = [inj2.decide("/x").action for _ in range(2000)]
    assert run1 == run2 and a[0] == run1[0]
    assert 0.25 < run1.count("error") / 2000 < 0.35


def test_job_outcomes_fail_first_then_fractions() -> None:
    inj = FaultInjector(FaultSettings(seed=1, jobs=JobFaults(fail_first=2, failed_fraction=0.2,
                                                             aborted_fraction=0.2)))
    outcomes = [inj.job_outcome() for _ in range(1002)]
    assert outcomes[:2] == ["FAILED", "FAILED"]
    rest = outcomes[2:]
    assert 150 < rest.count("FAILED") < 250 and 150 < rest.count("ABORTED") < 250
    inj.reset()
    assert inj.job_outcome() == "FAILED"  # reset counts jobs from zero again


def test_short_token_lifetime_override() -> None:
    assert FaultInjector(FaultSettings(token_lifetime_s=2.0)).token_lifetime(3600) == 2.0


@given(
    kind=st.sampled_from(["none", "fixed", "uniform", "exponential"]),
    low=st.floats(min_value=0, max_value=500),
    span=st.floats(min_value=0, max_value=500),
    mean=st.floats(min_value=0, max_value=1000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_latency_stays_within_bounds(kind: str, low: float, span: float, mean: float, seed: int) -> None:
    cfg = LatencyFaults(distribution=kind, min_ms=low, max_ms=low + span, mean_ms=mean)  # type: ignore[arg-type]
    delay = draw_latency(cfg, random.Random(seed))
    if kind == "none":
        assert delay == 0.0
    elif kind == "fixed":
        assert delay == low / 1000
    else:
        assert low / 1000 - 1e-9 <= delay <= (low + span) / 1000 + 1e-9


def test_dnc_record_failures_by_number_and_attempt() -> None:
    inj = FaultInjector(FaultSettings(dnc=DncFaults(fail_numbers=("+1 (415) 555-0100",), fail_times=2)))
    assert [inj.dnc_record_fails("14155550100") for _ in range(3)] == [True, True, False]
    assert not inj.dnc_record_fails("14155550101")
    inj.update(FaultSettings(dnc=DncFaults(fail_numbers=("14155550100",))))  # changed: counts restart
    assert all(inj.dnc_record_fails("14155550100") for _ in range(5))  # fail_times=0: always


@given(count=st.integers(min_value=0, max_value=300), share=st.floats(min_value=0.0, max_value=1.0))
def test_rejected_rows_are_the_share_rounded_and_repeat_for_a_seed(count: int, share: float) -> None:
    settings = FaultSettings(seed=7, uploads=UploadFaults(reject_fraction=share))
    rows = FaultInjector(settings).rejected_rows(count)
    assert len(rows) == (round(count * share) if share > 0 else 0)
    assert all(0 <= i < count for i in rows)
    assert FaultInjector(settings).rejected_rows(count) == rows
