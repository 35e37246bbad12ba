"""Fault injection over real sockets: 429, latency, 5xx, dropped and hung connections,
WebSocket drops and silent sockets, short token lifetimes, job outcomes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from simhelpers import BULK, EVENTS, FakeClock, bearer, items, subscription, v2_token, wait_job

from connector.simulator import (
    ConnectionFaults,
    FaultSettings,
    JobFaults,
    Simulator,
    SimulatorConfig,
    WebSocketFaults,
)

BODY = {"contactListId": "L1", "items": items(1)}


async def set_faults(http: aiohttp.ClientSession, url: str, changes: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url + "/_sim/faults", json=changes) as resp:
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


async def counts(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, int]]:
    async with http.get(url + "/_sim/requests") as resp:
        return dict((await resp.json())["byEndpoint"])


async def test_rate_limit_429_with_retry_after(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    limit = {"enabled": True, "requests_per_second": 0.5, "burst": 2}
    await set_faults(http, sim.url, {"paths": [BULK], "rate_limit": limit})
    statuses, retry = [], []
    for _ in range(4):
        async with http.post(sim.url + BULK, json=BODY, headers=bearer(token)) as resp:
            statuses.append(resp.status)
            retry.append(resp.headers.get("Retry-After"))
            if resp.status == 429:
                assert (await resp.json())["error"] == "rate_limited"
    assert statuses == [202, 202, 429, 429]
    assert retry[2] in ("1", "2") and retry[3] in ("1", "2")
    assert (await counts(http, sim.url))[f"POST {BULK}"] == {"202": 2, "429": 2}


async def test_rate_limit_without_retry_after(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    await set_faults(http, sim.url, {"rate_limit": {"enabled": True, "requests_per_second": 0.1, "burst": 1,
                                                    "retry_after": False}})
    statuses = []
    for _ in range(2):
        async with http.post(sim.url + BULK, json=BODY, headers=bearer(token)) as resp:
            statuses.append(resp.status)
            retry_after = resp.headers.get("Retry-After")
    assert statuses == [202, 429] and retry_after is None


async def test_latency_delays_answers(sim: Simulator, http: aiohttp.ClientSession) -> None:
    await set_faults(http, sim.url, {"latency": {"distribution": "fixed", "min_ms": 250}})
    started = time.monotonic()
    async with http.get(sim.url + "/.well-known/openid-configuration") as resp:
        assert resp.status == 200
    assert time.monotonic() - started >= 0.24
    started = time.monotonic()
    async with http.get(sim.url + "/_sim/jobs") as resp:  # the inspection API is never delayed
        assert resp.status == 200
    assert time.monotonic() - started < 0.24


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(sim: Simulator, http: aiohttp.ClientSession, status: int) -> None:
    await set_faults(http, sim.url, {"errors": {"rate": 1.0, "statuses": [status]}})
    async with http.get(sim.url + "/.well-known/openid-configuration") as resp:
        assert resp.status == status
        assert (await resp.json())["error"] == "simulated_error"


async def test_dropped_connection(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.configure_faults(connections=ConnectionFaults(drop_rate=1.0))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(sim.url + "/auth/token", data={"grant_type": "password"}):
            pass
    assert (await counts(http, sim.url))["POST /auth/token"] == {"dropped": 1}


async def test_hung_connection_until_the_client_gives_up(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.configure_faults(connections=ConnectionFaults(hang_rate=1.0))
    with pytest.raises(TimeoutError):
        async with http.post(sim.url + "/auth/token", data={"grant_type": "password"},
                             timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    assert (await counts(http, sim.url))["POST /auth/token"] == {"hung": 1}


async def test_hang_is_capped(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.configure_faults(connections=ConnectionFaults(hang_rate=1.0, hang_max_s=0.3))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(sim.url + "/auth/token", data={"grant_type": "password"},
                             timeout=aiohttp.ClientTimeout(total=10)):
            pass


async def test_hung_request_does_not_block_stop(sim_factory: Callable[..., Any],
                                                http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(SimulatorConfig(port=0, faults=FaultSettings(
        connections=ConnectionFaults(hang_rate=1.0, hang_max_s=60))))
    request = asyncio.create_task(http.get(sim.url + "/.well-known/openid-configuration"))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(aiohttp.ClientError):
        await request


async def test_websocket_drop_with_close_frame(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.configure_faults(websocket=WebSocketFaults(drop_every_s=0.3))
    token = await v2_token(http, sim.url)
    async with http.ws_connect(sim.url + EVENTS, headers=bearer(token)) as ws:
        await ws.send_str(subscription([]))
        assert (await ws.receive_json(timeout=5))["eventType"] == "subscription.confirmed"
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1012


async def test_websocket_drop_by_abort(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.configure_faults(websocket=WebSocketFaults(drop_every_s=0.3, drop_mode="abort"))
    token = await v2_token(http, sim.url)
    async with http.ws_connect(sim.url + EVENTS, headers=bearer(token)) as ws:
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert ws.close_code != 1012


async def test_silent_socket_sends_nothing_and_answers_no_ping(sim: Simulator,
                                                                http: aiohttp.ClientSession) -> None:
    sim.configure_faults(websocket=WebSocketFaults(silent_after_s=0.2))
    token = await v2_token(http, sim.url)
    async with http.post(sim.url + BULK, json=BODY, headers=bearer(token)) as resp:
        job_id = (await resp.json())["id"]
    async with http.ws_connect(sim.url + EVENTS, headers=bearer(token), autoping=False) as ws:
        await ws.ping(b"early")
        assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.PONG
        await asyncio.sleep(0.4)
        await ws.ping(b"late")
        await ws.send_str(subscription([job_id]))
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.5)
        assert not ws.closed  # open, but dead


async def test_short_token_lifetime(sim_factory: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    sim = await sim_factory(SimulatorConfig(port=0, faults=FaultSettings(token_lifetime_s=2)), clock=clock)
    form = {"grant_type": "client_credentials", "client_id": "connector", "client_secret": "connector-secret"}
    async with http.post(sim.url + "/api/v2/oauth2/token", data=form) as resp:
        body = await resp.json()
    assert body["expires_in"] == 2
    clock.advance(2)
    async with http.post(sim.url + BULK, json=BODY, headers=bearer(body["access_token"])) as resp:
        assert resp.status == 401


async def test_fail_first_jobs_then_complete(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.configure_faults(jobs=JobFaults(fail_first=1))
    token = await v2_token(http, sim.url)
    ids = []
    for i in range(2):
        async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(1, i)},
                             headers=bearer(token)) as resp:
            ids.append((await resp.json())["id"])
    async with http.ws_connect(sim.url + EVENTS, headers=bearer(token)) as ws:
        await ws.send_str(subscription(ids))
        terminal: dict[str, str] = {}
        while len(terminal) < 2:
            frame = await ws.receive_json(timeout=5)
            if frame["data"].get("status") in ("COMPLETED", "FAILED", "ABORTED"):
                terminal[frame["data"]["jobId"]] = frame["data"]["status"]
    assert terminal == {ids[0]: "FAILED", ids[1]: "COMPLETED"}
    assert list(sim.state.lists["L1"].contacts) == ["+14155550001"]  # the failed job landed nothing


@pytest.mark.parametrize(("faults", "status"), [({"failed_fraction": 1.0}, "FAILED"),
                                                ({"aborted_fraction": 1.0}, "ABORTED")])
async def test_job_outcome_fractions(sim: Simulator, http: aiohttp.ClientSession, faults: dict[str, float],
                                     status: str) -> None:
    await set_faults(http, sim.url, {"jobs": faults})
    token = await v2_token(http, sim.url)
    async with http.post(sim.url + BULK, json=BODY, headers=bearer(token)) as resp:
        job_id = (await resp.json())["id"]
    job = await wait_job(http, sim.url, job_id)
    assert job["status"] == status and job["failureReason"]


async def test_bad_runtime_fault_settings_are_400(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.url + "/_sim/faults", json={"errors": {"rate": 3}, "nope": True}) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert {p[0] for p in body["problems"]} == {"faults.errors.rate", "faults.nope"}
    async with http.post(sim.url + "/_sim/faults", json=[1]) as resp:
        assert resp.status == 400
    async with http.get(sim.url + "/_sim/faults") as resp:
        assert (await resp.json())["errors"]["rate"] == 0.0  # unchanged


async def test_never_dies_and_never_500s_on_garbage(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    async with http.get(sim.url + "/no/such/path") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    async with http.get(sim.url + BULK) as resp:
        assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
    for payload in (b"null", b"[]", b"1e999999", b'{"items": null}', b"\x00" * 100, b'{"a":' * 2000):
        async with http.post(sim.url + BULK, data=payload,
                             headers={**bearer(token), "Content-Type": "application/json"}) as resp:
            assert resp.status == 400, payload
    async with http.post(sim.url + BULK, json=BODY, headers=bearer(token)) as resp:
        assert resp.status == 202
    statuses = {s for c in (await counts(http, sim.url)).values() for s in c}
    assert "500" not in statuses
