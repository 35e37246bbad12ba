"""Profile v2 over real sockets: token, bulk insert, jobs, event stream, limits, auth."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from simhelpers import BULK, EVENTS, V2_TOKEN, FakeClock, bearer, items, subscription, v2_token, wait_job

from connector.simulator import JobSettings, Simulator, SimulatorConfig, V2Settings


async def test_token_answers_access_token_type_and_expiry(sim: Simulator,
                                                          http: aiohttp.ClientSession) -> None:
    form = {"grant_type": "client_credentials", "client_id": "connector", "client_secret": "connector-secret",
            "scope": "outbound:contactlistitem:write outbound:job:read events:subscribe"}
    async with http.post(sim.url + V2_TOKEN, data=form) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and len(body["access_token"]) > 20


async def test_token_with_basic_auth(sim: Simulator, http: aiohttp.ClientSession) -> None:
    basic = "Basic " + base64.b64encode(b"connector:connector-secret").decode()
    async with http.post(sim.url + V2_TOKEN, data={"grant_type": "client_credentials"},
                         headers={"Authorization": basic}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(("form", "status", "error"), [
    ({"grant_type": "client_credentials", "client_id": "connector", "client_secret": "wrong"}, 401,
     "invalid_client"),
    ({"grant_type": "client_credentials", "client_id": "other", "client_secret": "connector-secret"}, 401,
     "invalid_client"),
    ({"grant_type": "password", "client_id": "connector", "client_secret": "connector-secret"}, 400,
     "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "client_id": "connector", "client_secret": "connector-secret",
      "scope": "admin:all"}, 400, "invalid_scope"),
])
async def test_token_refusals(sim: Simulator, http: aiohttp.ClientSession, form: dict[str, str], status: int,
                              error: str) -> None:
    async with http.post(sim.url + V2_TOKEN, data=form) as resp:
        assert resp.status == status
        assert (await resp.json())["error"] == error


async def test_token_needs_a_form_body(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.url + V2_TOKEN, json={"grant_type": "client_credentials"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"


async def test_bulk_insert_job_completes_and_contacts_land(sim: Simulator,
                                                           http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(3)},
                         headers=bearer(token)) as resp:
        assert resp.status == 202
        job_id = (await resp.json())["id"]
    await wait_job(http, sim.url, job_id)
    async with http.get(f"{sim.url}/api/v2/outbound/jobs/{job_id}", headers=bearer(token)) as resp:
        job = await resp.json()
    assert (job["id"], job["status"], job["progress"], job["itemCount"]) == (job_id, "COMPLETED", 100, 3)
    assert job["createdAt"].endswith("Z") and job["completedAt"]
    assert sorted(sim.state.lists["L1"].contacts) == ["+14155550000", "+14155550001", "+14155550002"]


async def test_job_status_is_polled_while_in_progress(sim_factory: Callable[..., Any],
                                                      http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(SimulatorConfig(port=0, jobs=JobSettings(items_per_second=20)))
    token = await v2_token(http, sim.url)
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(10)},
                         headers=bearer(token)) as resp:
        job_id = (await resp.json())["id"]
    await asyncio.sleep(0.15)
    async with http.get(f"{sim.url}/api/v2/outbound/jobs/{job_id}", headers=bearer(token)) as resp:
        job = await resp.json()
    assert job["status"] == "IN_PROGRESS" and 0 <= job["progress"] < 100
    async with http.get(f"{sim.url}/api/v2/outbound/jobs/nope", headers=bearer(token)) as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "job_not_found"


async def test_more_than_10000_items_is_a_400_naming_the_index(sim: Simulator,
                                                               http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(10_000)},
                         headers=bearer(token)) as resp:
        assert resp.status == 202
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(10_001)},
                         headers=bearer(token)) as resp:
        assert resp.status == 400
        err = await resp.json()
    assert err["error"] == "too_many_items" and err["index"] == 10_000 and "10000" in err["message"]


@pytest.mark.parametrize(("payload", "error", "fragment"), [
    (b"{not json", "invalid_json", "not valid JSON"),
    (b"", "invalid_json", "empty"),
    (b"\xff\xfe", "invalid_json", "UTF-8"),
    (json.dumps({"contactListId": "L1", "items": "x"}).encode(), "invalid_body", "items must be an array"),
    (json.dumps({"contactListId": 1, "items": []}).encode(), "invalid_body", "contactListId"),
    (json.dumps({"contactListId": "L1", "items": [{"phoneNumber": "+14155550000"},
                                                  {"phoneNumber": "415-555"}]}).encode(),
     "invalid_item", "item 1: phoneNumber"),
])
async def test_malformed_bodies_are_400_naming_the_problem(sim: Simulator, http: aiohttp.ClientSession,
                                                           payload: bytes, error: str, fragment: str) -> None:
    token = await v2_token(http, sim.url)
    headers = {**bearer(token), "Content-Type": "application/json"}
    async with http.post(sim.url + BULK, data=payload, headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"] == error and fragment in body["message"]


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
async def test_missing_or_wrong_token_is_401(sim: Simulator, http: aiohttp.ClientSession,
                                             auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    body = {"contactListId": "L1", "items": items(1)}
    async with http.post(sim.url + BULK, json=body, headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "invalid_token"
        assert "Bearer" in resp.headers["WWW-Authenticate"]
    async with http.get(sim.url + "/api/v2/outbound/jobs/x", headers=headers) as resp:
        assert resp.status == 401


async def test_expired_token_is_401(sim_factory: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    sim = await sim_factory(clock=clock)
    token = await v2_token(http, sim.url)
    clock.advance(3601)
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(1)},
                         headers=bearer(token)) as resp:
        assert resp.status == 401
        assert "expired" in (await resp.json())["message"]


async def test_missing_scope_is_403(sim: Simulator, http: aiohttp.ClientSession) -> None:
    read_only = await v2_token(http, sim.url, scope="outbound:job:read")
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(1)},
                         headers=bearer(read_only)) as resp:
        assert resp.status == 403 and (await resp.json())["error"] == "insufficient_scope"
    write_only = await v2_token(http, sim.url, scope="outbound:contactlistitem:write")
    async with http.get(sim.url + "/api/v2/outbound/jobs/x", headers=bearer(write_only)) as resp:
        assert resp.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with http.ws_connect(sim.url + EVENTS, headers=bearer(write_only)):
            pass
    assert err.value.status == 403


async def test_idempotency_key_returns_the_original_job(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    body = {"contactListId": "L1", "items": items(2)}
    headers = {**bearer(token), "Idempotency-Key": "batch-p0-0-99"}
    async with http.post(sim.url + BULK, json=body, headers=headers) as resp:
        first = (await resp.json())["id"]
        assert "Idempotent-Replayed" not in resp.headers
    async with http.post(sim.url + BULK, json=body, headers=headers) as resp:
        assert resp.status == 202 and (await resp.json())["id"] == first
        assert resp.headers["Idempotent-Replayed"] == "true"
    async with http.post(sim.url + BULK, json={**body, "items": items(1)}, headers=headers) as resp:
        assert resp.status == 422 and (await resp.json())["error"] == "idempotency_key_reused"
    async with http.post(sim.url + BULK, json=body, headers=bearer(token)) as resp:
        assert (await resp.json())["id"] != first  # no key: a new job
    assert len(sim.state.jobs) == 2
    async with http.get(sim.url + "/_sim/replays") as resp:
        assert (await resp.json())["total"] == 1


async def test_event_stream_sends_progress_then_terminal(sim_factory: Callable[..., Any],
                                                         http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(SimulatorConfig(port=0, jobs=JobSettings(items_per_second=200)))
    token = await v2_token(http, sim.url)
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(100)},
                         headers=bearer(token)) as resp:
        job_id = (await resp.json())["id"]
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(5, 500)},
                         headers=bearer(token)) as resp:
        other = (await resp.json())["id"]
    async with http.ws_connect(sim.url + EVENTS, headers=bearer(token)) as ws:
        await ws.send_str(subscription([job_id]))
        confirmed = await ws.receive_json(timeout=5)
        assert confirmed["eventType"] == "subscription.confirmed"
        assert confirmed["data"]["jobIds"] == [job_id]
        frames = []
        while not frames or frames[-1]["data"]["status"] == "IN_PROGRESS":
            frames.append(await ws.receive_json(timeout=5))
    assert {f["eventType"] for f in frames} == {"outbound.contactlistitems.bulkinsert"}
    assert {f["data"]["jobId"] for f in frames} == {job_id}  # never the unsubscribed job
    statuses = [f["data"]["status"] for f in frames]
    assert statuses[-1] == "COMPLETED" and set(statuses[:-1]) == {"IN_PROGRESS"} and len(statuses) >= 3
    progress = [f["data"]["progress"] for f in frames]
    assert progress == sorted(progress) and progress[-1] == 100
    assert frames[-1]["timestamp"].endswith("Z")
    assert other in sim.state.jobs


async def test_finished_job_gets_its_terminal_event_on_subscription(sim: Simulator,
                                                                    http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(2)},
                         headers=bearer(token)) as resp:
        job_id = (await resp.json())["id"]
    await wait_job(http, sim.url, job_id)
    async with http.ws_connect(f"{sim.url}{EVENTS}?access_token={token}") as ws:
        await ws.send_str(subscription([job_id]))
        assert (await ws.receive_json(timeout=5))["eventType"] == "subscription.confirmed"
        event = await ws.receive_json(timeout=5)
    assert event["data"] == {"jobId": job_id, "status": "COMPLETED", "progress": 100, "contactListId": "L1",
                             "itemCount": 2}


async def test_bad_subscription_frames_get_error_frames(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    async with http.ws_connect(sim.url + EVENTS, headers=bearer(token)) as ws:
        for frame in ("nope", "[]", json.dumps({"eventTypes": ["other"]}),
                      json.dumps({"eventTypes": ["outbound.contactlistitems.bulkinsert"], "filters": {}})):
            await ws.send_str(frame)
            reply = await ws.receive_json(timeout=5)
            assert reply["eventType"] == "error" and reply["data"]["message"]
        await ws.send_bytes(b"\x00")
        assert (await ws.receive_json(timeout=5))["eventType"] == "error"
        await ws.ping()  # still answering
        await ws.send_str(subscription([]))
        assert (await ws.receive_json(timeout=5))["eventType"] == "subscription.confirmed"


@pytest.mark.parametrize("auth", [None, "Bearer wrong"])
async def test_event_socket_needs_a_valid_token(sim: Simulator, http: aiohttp.ClientSession,
                                                auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with http.ws_connect(sim.url + EVENTS, headers=headers):
            pass
    assert err.value.status == 401


async def test_event_socket_without_token_when_optional(sim_factory: Callable[..., Any],
                                                        http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(SimulatorConfig(port=0, v2=V2Settings(websocket_auth="optional")))
    async with http.ws_connect(sim.url + EVENTS) as ws:
        await ws.send_str(subscription([]))
        assert (await ws.receive_json(timeout=5))["eventType"] == "subscription.confirmed"
    with pytest.raises(aiohttp.WSServerHandshakeError):
        async with http.ws_connect(sim.url + EVENTS, headers=bearer("wrong")):
            pass
