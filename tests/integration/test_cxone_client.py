"""Profile clients against the in-process simulator: auth, retries, Retry-After, 401 refresh; the
API details of issue 16 (Accept, access-key token, API version, DNC per-record results, list
counts, time zones, removeProspects)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from integration_helpers import simple_batch

from connector.config import CXoneSettings, Secret
from connector.core.models import Batch, ContactEvent, SourceRef, batch_id_for
from connector.cxone.backoff import no_jitter
from connector.cxone.calllists import CallListsClient
from connector.cxone.client import Retrying, make_client
from connector.cxone.exceptions import AuthError, ClientError, DncRecordsError, RetriesExhaustedError
from connector.cxone.protocol import COMPLETED, IN_PROGRESS, QUEUED
from connector.cxone.v2 import V2Client
from connector.errors import ConfigError
from connector.simulator import (
    ErrorFaults,
    FaultSettings,
    RateLimitFaults,
    Simulator,
    SimulatorConfig,
    V2Settings,
)
from connector.simulator.config import DncFaults, UploadFaults


def batch(n: int = 3, first: int = 0) -> Batch:
    return simple_batch(first, n)


def cx(url: str, **kw: object) -> CXoneSettings:
    base = CXoneSettings(base_url=url, auth_base_url=url, client_secret=Secret("connector-secret"),
                         access_key_id="ak-id", access_key_secret=Secret("ak-secret"),
                         request_timeout_s=3.0, connect_timeout_s=2.0, max_request_attempts=6,
                         backoff_initial_s=0.01, backoff_max_s=0.08)
    return replace(base, **kw)  # type: ignore[arg-type]


class Sleeps:
    """Records the delays the retry loop asks for, and does not wait them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator(SimulatorConfig())
    await s.start(host="127.0.0.1", port=0)
    yield s
    await s.stop()


async def test_v2_submit_and_poll(sim: Simulator) -> None:
    client = make_client(cx(sim.url))
    try:
        [job] = await client.submit(batch())
        assert job.item_count == 3
        update = await client.job_status(job.job_id)
        assert update.job_id == job.job_id and update.status in {QUEUED, IN_PROGRESS, COMPLETED}
        assert client.push_url() == sim.url.replace("http://", "ws://") + "/api/v2/events"
    finally:
        await client.close()


async def test_401_refreshes_the_token_once(sim: Simulator) -> None:
    client = make_client(cx(sim.url))
    assert isinstance(client, V2Client)
    try:
        await client.submit(batch(2))
        sim.state.reset()  # the simulator forgets every token it issued
        await client.submit(batch(2, first=10))
        assert client.tokens.refreshes == 2
    finally:
        await client.close()


async def test_wrong_secret_is_fatal_auth_error(sim: Simulator) -> None:
    client = make_client(cx(sim.url, client_secret=Secret("wrong")))
    try:
        with pytest.raises(AuthError) as info:
            await client.submit(batch())
        assert info.value.status == 401 and "wrong" not in str(info.value)
    finally:
        await client.close()


@pytest.mark.parametrize("retry_after", [True, False])
async def test_429_honours_retry_after_or_backs_off(sim: Simulator, retry_after: bool) -> None:
    sim.configure_faults(paths=("/api/v2/outbound",), rate_limit=RateLimitFaults(
        enabled=True, requests_per_second=0.5, burst=1, retry_after=retry_after))
    sleeps = Sleeps()
    settings = cx(sim.url, max_request_attempts=4)
    client = V2Client(settings, Retrying(settings, jitter=no_jitter, sleep=sleeps))
    try:
        await client.submit(batch())  # takes the one token in the bucket
        with pytest.raises(RetriesExhaustedError) as info:
            await client.submit(batch(first=5))  # the bucket refills only after 2 s; sleeps are instant
        assert info.value.attempts == 4 and info.value.last.retriable
        assert len(sleeps.delays) == 3
        if retry_after:
            assert all(d >= 1.0 for d in sleeps.delays)  # whole seconds from the server
        else:
            assert sleeps.delays == [0.01, 0.02, 0.04]  # capped exponential (jitter off)
    finally:
        await client.close()


async def test_5xx_retried_then_400_not_retried(sim: Simulator) -> None:
    sim.configure_faults(paths=("/api/v2/outbound",), errors=ErrorFaults(rate=1.0, statuses=(503,)))
    sleeps = Sleeps()
    settings = cx(sim.url, max_request_attempts=3)
    client = V2Client(settings, Retrying(settings, jitter=no_jitter, sleep=sleeps))
    try:
        with pytest.raises(RetriesExhaustedError) as info:
            await client.submit(batch())
        assert getattr(info.value.last, "status", None) == 503 and len(sleeps.delays) == 2
        sim.configure_faults(FaultSettings())
        sleeps.delays.clear()
        bad = batch()
        bad.contacts[0].phone_e164 = "12"
        with pytest.raises(ClientError) as fatal:
            await client.submit(bad)
        assert fatal.value.status == 400 and fatal.value.body and sleeps.delays == []
    finally:
        await client.close()


async def test_call_lists_discovery_upload_and_replay(sim: Simulator) -> None:
    client = make_client(cx(sim.url, profile="call-lists"))
    assert isinstance(client, CallListsClient)
    try:
        b = batch(5)
        jobs = await client.submit(b)
        assert [j.item_count for j in jobs] == [5]
        assert (await client.auth.api_endpoint()).startswith("http://127.0.0.1")
        replay = await client.submit(b)  # same idempotency key, same file name
        assert [j.job_id for j in replay] == [j.job_id for j in jobs]
        update = await client.job_status(jobs[0].job_id)
        assert update.job_id == jobs[0].job_id
    finally:
        await client.close()


async def test_call_lists_wrong_access_key_is_fatal(sim: Simulator) -> None:
    client = make_client(cx(sim.url, profile="call-lists", access_key_secret=Secret("nope")))
    try:
        with pytest.raises(AuthError):
            await client.submit(batch())
    finally:
        await client.close()


# ---------------------------------------------------------------- API details (issue 16)

class TzContact(ContactEvent):
    """A contact carrying a time zone, as the pipeline will add it (``time_zone``)."""

    __slots__ = ("time_zone",)


def tz_batch(zones: list[str | None], first: int = 0) -> Batch:
    contacts: list[ContactEvent] = []
    for i, zone in enumerate(zones, start=first):
        c = TzContact.of(SourceRef("crm", 0, i), None, b"", [], 0, f"e{i}", f"c{i}", f"+1415555{i:04d}", True,
                         "Ann", None, None, {}, 1_700_000_000_000, "crm")
        c.time_zone = zone
        contacts.append(c)
    covered = [c.source for c in contacts]
    return Batch(batch_id_for(covered), contacts, covered, "size", time.monotonic())


async def sim_json(url: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


async def wait_completed(client: Any, job_id: str) -> None:
    async with asyncio.timeout(10):
        while (await client.job_status(job_id)).status != COMPLETED:
            await asyncio.sleep(0.02)


@pytest.fixture
async def calllists(sim: Simulator) -> AsyncIterator[CallListsClient]:
    client = make_client(cx(sim.url, profile="call-lists", remove_prospects=True))
    assert isinstance(client, CallListsClient)
    yield client
    await client.close()


async def test_every_request_asks_for_json(sim_factory_strict: Simulator) -> None:
    # v2 told to require Accept: application/json, as call-lists does by default
    sim = sim_factory_strict
    v2 = make_client(cx(sim.url))
    cl = make_client(cx(sim.url, profile="call-lists"))
    assert isinstance(cl, CallListsClient)
    try:
        [job] = await v2.submit(batch())
        await wait_completed(v2, job.job_id)
        assert (await v2.push_headers())["Accept"] == "application/json"  # the socket handshake too
        [upload] = await cl.submit(batch(2, first=20))
        await wait_completed(cl, upload.job_id)
        assert (await cl.list_counts()).valid_records == 2
        assert (await cl.add_dnc_records("5", ["+14155550020"])).ok
    finally:
        await v2.close()
        await cl.close()
    counts = (await sim_json(sim.url + "/_sim/requests"))["byEndpoint"]
    assert not [e for e, by in counts.items() if "406" in by]
    assert counts["POST /auth/token"] == {"200": 1} and counts["POST /api/v2/oauth2/token"] == {"200": 1}


@pytest.fixture
async def sim_factory_strict() -> AsyncIterator[Simulator]:
    s = Simulator(SimulatorConfig(v2=V2Settings(accept="required")))
    await s.start(host="127.0.0.1", port=0)
    yield s
    await s.stop()


async def test_access_key_token_call_end_to_end(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(cx(sim.url, profile="call-lists", auth_method="access_key", client_secret=None))
    try:
        [job] = await client.submit(batch(3))
        await wait_completed(client, job.job_id)
    finally:
        await client.close()
    counts = (await sim_json(sim.url + "/_sim/requests"))["byEndpoint"]
    assert counts["POST /authentication/v1/token/access-key"] == {"200": 1}
    assert "POST /auth/token" not in counts and "GET /.well-known/openid-configuration" not in counts
    assert counts["GET /.well-known/cxone-configuration"] == {"200": 1}  # tenantId from the JWT
    wrong = make_client(cx(sim.url, profile="call-lists", auth_method="access_key",
                           access_key_secret=Secret("nope-secret")))
    try:
        with pytest.raises(AuthError) as info:
            await wrong.submit(batch())
    finally:
        await wrong.close()
    assert info.value.status == 401 and not info.value.retriable
    assert "nope-secret" not in str(info.value) and "nope-secret" not in caplog.text


async def test_access_key_token_url_is_configurable(sim: Simulator) -> None:
    client = make_client(cx(sim.url, profile="call-lists", auth_method="access_key",
                            access_key_token_url=sim.url + "/elsewhere/token"))
    try:
        with pytest.raises(ClientError) as info:
            await client.submit(batch())
    finally:
        await client.close()
    assert info.value.status == 404  # it went where it was told, not to the default path


async def test_api_version_is_in_every_admin_path(sim: Simulator) -> None:
    sim.configure_faults(paths=("/inContactAPI/services/v35.0/",), errors=ErrorFaults(rate=1.0, statuses=(503,)))
    default = make_client(cx(sim.url, profile="call-lists"))
    other = make_client(cx(sim.url, profile="call-lists", api_version="v35.0", max_request_attempts=2))
    try:
        assert len(await default.submit(batch())) == 1  # v34.0: not faulted
        with pytest.raises(RetriesExhaustedError):
            await other.submit(batch())
    finally:
        await default.close()
        await other.close()


async def test_dnc_records_are_checked_one_by_one(sim: Simulator, calllists: CallListsClient,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    numbers = ["+14155550101", "+14155550102", "+14155550103"]
    sim.configure_faults(dnc=DncFaults(fail_numbers=("14155550102",)))
    result = await calllists.add_dnc_records("9", numbers + ["+1 bad"], raise_on_failure=False)
    assert result.succeeded == ("+14155550101", "+14155550103") and not result.ok
    assert [(r.number, r.retriable) for r in result.failed] == [("+14155550102", True), ("+1 bad", False)]
    assert [r.formatted_phone for r in result.records[:3]] == ["14155550101", "14155550102", "14155550103"]
    assert result.error_count == 1 and "simulated failure" in (result.failed[0].error or "")
    assert sorted(sim.state.dnc.groups["9"]) == ["14155550101", "14155550103"]
    with pytest.raises(DncRecordsError) as info:
        await calllists.add_dnc_records("9", numbers)  # the default: a failed record raises
    assert info.value.retriable and info.value.result.succeeded == ("+14155550101", "+14155550103")
    everything = caplog.text + str(info.value) + "".join(r.error or "" for r in result.failed)
    assert "4155550102" not in everything  # CXone's text quotes the number; we never show it
    sim.configure_faults(dnc=DncFaults(fail_numbers=("14155550103",)))
    expired = await calllists.remove_dnc_records("9", numbers, raise_on_failure=False)
    # the expire answer names no number: results are matched by position
    assert expired.succeeded == ("+14155550101", "+14155550102")
    assert [r.number for r in expired.failed] == ["+14155550103"]
    assert sorted(sim.state.dnc.groups["9"]) == ["14155550103"]


async def test_dnc_records_can_be_sent_as_e164(sim: Simulator) -> None:
    client = make_client(cx(sim.url, profile="call-lists", dnc_phone_format="e164"))
    assert isinstance(client, CallListsClient)
    try:
        assert (await client.add_dnc_records("4", ["+442079460000"])).succeeded == ("+442079460000",)
        [hit] = await client.find_dnc_groups("+442079460000")
    finally:
        await client.close()
    assert (hit.group_id, hit.formatted_phone) == ("4", "442079460000")


async def test_dnc_listing_and_search(sim: Simulator, calllists: CallListsClient) -> None:
    numbers = [f"+1415555{i:04d}" for i in range(7)]
    await calllists.add_dnc_records("12", numbers)
    await calllists.add_dnc_records("13", numbers[:1])
    first = await calllists.list_dnc_records("12", top=5)
    rest = await calllists.list_dnc_records("12", top=5, skip=5)
    assert first.total == rest.total == 7
    assert [r.phone_number for r in first.records + rest.records] == [n[1:] for n in numbers]
    assert all(r.record_id and r.date_collected for r in first.records)
    assert [h.group_id for h in await calllists.find_dnc_groups(numbers[0])] == ["12", "13"]
    assert await calllists.find_dnc_groups("+14155559999") == ()


async def test_list_counts_show_rejected_rows(sim: Simulator, calllists: CallListsClient) -> None:
    sim.configure_faults(uploads=UploadFaults(reject_fraction=0.3))
    [job] = await calllists.submit(batch(10))
    await wait_completed(calllists, job.job_id)
    counts = await calllists.list_counts()
    assert (counts.total_records, counts.valid_records, counts.invalid_records) == (10, 7, 3)
    assert counts.list_id == calllists.list_id
    with pytest.raises(ClientError) as info:
        await calllists.list_counts("424242")
    assert info.value.status == 404


async def test_time_zones_reach_both_profiles(sim: Simulator) -> None:
    cl = make_client(cx(sim.url, profile="call-lists", default_time_zone="America/Denver"))
    v2 = make_client(cx(sim.url))
    try:
        [upload] = await cl.submit(tz_batch(["America/Chicago", None]))
        await wait_completed(cl, upload.job_id)
        [job] = await v2.submit(tz_batch(["America/New_York", None], first=50))
        await wait_completed(v2, job.job_id)
    finally:
        await cl.close()
        await v2.close()
    lists = {lst["profile"]: lst for lst in (await sim_json(sim.url + "/_sim/lists"))["lists"]}
    assert lists["call-lists"]["columnMappings"]["timeZoneColumn"] == "timeZone"
    contacts = (await sim_json(f"{sim.url}/_sim/lists/{lists['call-lists']['listId']}/contacts"))["contacts"]
    assert {c["externalId"]: c["timeZone"] for c in contacts} == {"c0": "America/Chicago", "c1": "America/Denver"}
    assert contacts[1]["fields"]["timeZone"] == ""  # an empty cell: the upload's default applies
    items = (await sim_json(f"{sim.url}/_sim/lists/{lists['v2']['listId']}/contacts"))["contacts"]
    assert [(c["timeZone"], "timeZone" in c["customFields"]) for c in items] == [
        ("America/New_York", True), (None, False)]


async def test_remove_prospects_behind_its_switch(sim: Simulator, calllists: CallListsClient) -> None:
    [job] = await calllists.submit(batch(3))
    await wait_completed(calllists, job.job_id)
    removal = await calllists.remove_prospects(["c0", "c2", "nobody"])
    assert removal.removed == ("c0", "c2") and removal.failed == {"nobody": "NotFound"} and not removal.ok
    contacts = sim.state.lists[calllists.list_id].contacts
    assert [c["externalId"] for c in contacts.values()] == ["c1"]
    off = make_client(cx(sim.url, profile="call-lists"))
    assert isinstance(off, CallListsClient)
    try:
        with pytest.raises(ConfigError):
            await off.remove_prospects(["c1"])
    finally:
        await off.close()
    assert [c["externalId"] for c in contacts.values()] == ["c1"]
