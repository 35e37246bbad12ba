"""connector.ops.health: what /healthz and /readyz report."""

from __future__ import annotations

from connector.ops.health import Health


def test_live_fails_on_a_dead_task_and_on_a_stall_while_nothing_settles() -> None:
    h = Health(consumer_last_poll=100.0)
    assert h.live(101.0, 30.0, 600.0) == (True, "ok")
    h.stalled_s = 601.0
    alive, reason = h.live(101.0, 30.0, 600.0)
    assert not alive and "pending for 601s while nothing settled" in reason
    h.dead_task = "dnc-group-pusher"
    assert h.live(101.0, 30.0, 600.0) == (False, "task dnc-group-pusher is dead")


def test_ready_names_the_closed_gate_and_what_cannot_be_reached() -> None:
    h = Health(dnc_ready=True, partitions_assigned=True, token_ok=True)
    assert h.ready() == (True, "ok")
    h.gate = (False, "the DNC table is not current: partition 2 not fetched for 31s")
    h.unavailable = ("the Kafka brokers",)
    ready, reason = h.ready()
    assert not ready
    assert reason == ("sending held: the DNC table is not current: partition 2 not fetched for 31s; "
                      "the Kafka brokers unavailable")
