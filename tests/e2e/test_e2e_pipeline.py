"""The whole connector against the real broker and the simulator: both profiles, no faults."""

from __future__ import annotations

import pytest
from e2e_helpers import (
    SimFactory,
    Topics,
    check_run,
    connector_config,
    expected_phones,
    produce_sample,
    running,
    sample,
    settings_of,
    wait_committed_to_end,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.mark.parametrize("profile", ["v2", "call-lists"])
async def test_both_profiles_deliver_exactly_the_compliant_set(
    profile: str, kafka_bootstrap: str, e2e_topics: Topics, start_sim: SimFactory
) -> None:
    sim = await start_sim()
    data = sample(count=400, contacts=150, seed=11)
    produce_sample(kafka_bootstrap, e2e_topics, data)
    config = connector_config(e2e_topics, kafka_bootstrap, sim.url, profile=profile)
    settings = settings_of(config)
    async with running(settings):
        await wait_committed_to_end(kafka_bootstrap, settings.kafka.group_id, e2e_topics)
    expected = expected_phones(data, profile)
    assert len(expected) > 50  # a sample worth the name
    out = await check_run(kafka_bootstrap, e2e_topics, sim.url, profile, expected)
    completed = out.events_of("COMPLETED")
    assert len({e["batch_id"] for e in completed}) >= 3  # several windows formed
    assert all(e["list_id"] and e["attempt"] == 1 for e in completed)
    stages = {d.stage for d in out.dead}
    assert stages == {"normalise"}  # only the invalid numbers
    assert {s["reason"] for s in out.suppressed} >= {"DNC", "OPTED_OUT"}
