"""The pure pacer: token bucket, shared closed-until time, AIMD; every clock injected."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.cxone.pacing import Pacer


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def go(pacer: Pacer, clock: Clock) -> float:
    """Wait as the gate would (advance the clock by the delay) and take the slot."""
    clock.now += pacer.delay()
    return pacer.take()


def test_unlimited_never_waits() -> None:
    clock = Clock()
    pacer = Pacer(0.0, clock=clock)
    for _ in range(100):
        assert pacer.delay() == 0.0
        pacer.take()
    assert pacer.rate == math.inf


def test_configured_rate_spaces_requests() -> None:
    clock = Clock()
    pacer = Pacer(2.0, clock=clock)
    times = [go(pacer, clock) for _ in range(5)]
    assert times == pytest.approx([100.0, 100.5, 101.0, 101.5, 102.0])


def test_burst_lets_requests_go_back_to_back_then_spaces() -> None:
    clock = Clock()
    pacer = Pacer(1.0, burst=3, clock=clock)
    times = [go(pacer, clock) for _ in range(5)]
    assert times[:3] == [100.0, 100.0, 100.0]
    assert times[3:] == pytest.approx([101.0, 102.0])


def test_idle_time_is_not_banked_beyond_the_burst() -> None:
    clock = Clock()
    pacer = Pacer(1.0, clock=clock)
    go(pacer, clock)
    clock.now += 60
    assert [go(pacer, clock) for _ in range(2)] == pytest.approx([160.0, 161.0])


@given(rate=st.floats(0.1, 50), burst=st.integers(1, 5),
       gaps=st.lists(st.floats(0, 3), min_size=1, max_size=60))
def test_never_more_than_rate_times_span_plus_burst(rate: float, burst: int, gaps: list[float]) -> None:
    """Whatever the arrival pattern, the sends obey the bucket: n <= burst + rate * span."""
    clock = Clock(0.0)
    pacer = Pacer(rate, burst=burst, clock=clock)
    sent = []
    for gap in gaps:
        clock.now += gap
        sent.append(go(pacer, clock))
    assert sent == sorted(sent)
    for i in range(len(sent)):
        for j in range(i, len(sent)):
            assert j - i + 1 <= burst + rate * (sent[j] - sent[i]) + 1e-6


def test_429_closes_the_gate_for_everyone_and_the_probe_goes_first() -> None:
    clock = Clock()
    pacer = Pacer(0.0, clock=clock)
    sent = [pacer.take() for _ in range(4)]  # a herd: four requests at once
    clock.now += 0.05
    probe = pacer.throttled(sent[0], 2.0)  # Retry-After: 2
    assert probe is not None and probe == pytest.approx(102.05)
    assert pacer.closed_until == pytest.approx(102.05)
    # The other three were in flight when the episode began: no second decrease, no probe.
    rate = pacer.rate
    assert [pacer.throttled(s, 2.0) for s in sent[1:]] == [None, None, None]
    assert pacer.rate == rate and pacer.episodes == 1
    # Everyone else waits past the opening, the probe exactly until it.
    assert pacer.delay() == pytest.approx(2.0 + 1 / rate)
    clock.now = probe
    assert pacer.delay(probe=probe) == 0.0
    assert pacer.take(probe=probe) == probe
    assert pacer.delay() == pytest.approx(1 / rate)


def test_probe_with_an_injected_sleep_that_never_advances_the_clock() -> None:
    """The probe's own wait counts even when the clock did not move (tests inject such sleeps)."""
    clock = Clock()
    pacer = Pacer(0.0, clock=clock)
    sent = pacer.take()
    probe = pacer.throttled(sent, 0.01)
    assert probe is not None
    assert pacer.delay(probe=probe) == 0.0
    rate = pacer.rate
    again = pacer.take(probe=probe)
    probe2 = pacer.throttled(again, 0.02)  # the probe's own 429: closed again, still the probe
    assert probe2 is not None and pacer.delay(probe=probe2) == 0.0
    assert pacer.closed_until == probe2
    # ... and no second decrease: the gate opened too early, the pace was not too fast.
    assert pacer.episodes == 1 and pacer.rate == rate
    third = pacer.take()  # an ordinary request sent after the episode began: a new episode
    assert pacer.throttled(third, 0.04) is not None
    assert pacer.episodes == 2 and pacer.rate == pytest.approx(rate / 2)


def test_decrease_from_unlimited_uses_the_measured_send_rate() -> None:
    clock = Clock()
    pacer = Pacer(0.0, clock=clock)
    for _ in range(8):  # 8 requests over 4 s: 2 per second
        pacer.take()
        clock.now += 0.5
    last = clock.now - 0.5
    pacer.throttled(last, 1.0)
    assert pacer.rate == pytest.approx(1.0, rel=0.15)


def test_aimd_halves_then_recovers_additively_to_the_configured_rate() -> None:
    clock = Clock()
    pacer = Pacer(4.0, recovery=20, min_rate=0.1, clock=clock)
    sent = go(pacer, clock)
    pacer.throttled(sent, 0.5)  # no Retry-After: the backoff delay
    assert pacer.rate == pytest.approx(2.0)
    rates = []
    for _ in range(25):
        sent = go(pacer, clock)
        pacer.succeeded(sent)
        rates.append(pacer.rate)
    assert rates[0] == pytest.approx(2.1)  # 1/20 of the 2.0 lost per success
    assert rates == sorted(rates)
    assert rates[19] == pytest.approx(4.0) and max(rates) == 4.0  # never above the configured rate


def test_successes_of_requests_sent_before_the_decrease_do_not_count() -> None:
    clock = Clock()
    pacer = Pacer(4.0, clock=clock)
    early = pacer.take()
    clock.now += 0.1
    pacer.throttled(pacer.take(), 0.5)
    rate = pacer.rate
    pacer.succeeded(early)
    assert pacer.rate == rate


def test_rate_never_drops_below_min_rate() -> None:
    clock = Clock()
    pacer = Pacer(1.0, min_rate=0.4, clock=clock)
    for _ in range(6):
        clock.now += pacer.delay()
        sent = pacer.take()
        probe = pacer.throttled(sent, 0.1)
        assert probe is not None
        clock.now = max(clock.now, probe)
    assert pacer.rate == 0.4


@given(st.lists(st.tuples(st.sampled_from(["ok", "429"]), st.floats(0, 5)), max_size=80))
def test_rate_stays_between_min_and_configured(events: list[tuple[str, float]]) -> None:
    clock = Clock(0.0)
    pacer = Pacer(3.0, min_rate=0.2, clock=clock)
    for kind, wait in events:
        sent = go(pacer, clock)
        if kind == "ok":
            pacer.succeeded(sent)
        else:
            pacer.throttled(sent, wait)
        assert 0.2 <= pacer.rate <= 3.0
        assert pacer.delay() >= 0.0


@pytest.mark.parametrize("kwargs", [{"burst": 0.5}, {"min_rate": 0.0}, {"decrease": 1.0}, {"recovery": 0.5},
                                    {"window_s": 0.0}])
def test_bad_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Pacer(1.0, **kwargs)  # type: ignore[arg-type]
