"""The Accept check over real sockets: call-lists needs ``application/json`` (CXone answers
"No known way to render data" otherwise); v2 negotiates as plain HTTP unless told to be strict."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from simhelpers import API, V2_TOKEN, bearer

from connector.simulator import Simulator, SimulatorConfig, V2Settings
from connector.simulator.accept import acceptable
from connector.simulator.config import CallListsSettings

BASIC = {"Authorization": "Basic " + base64.b64encode(b"connector:connector-secret").decode()}
PASSWORD = {"grant_type": "password", "username": "ak-id", "password": "ak-secret"}
V2_FORM = {"grant_type": "client_credentials", "client_id": "connector", "client_secret": "connector-secret"}


@pytest.mark.parametrize(("header", "mode", "ok"), [
    (None, "required", False), ("*/*", "required", False), ("application/*", "required", False),
    ("text/html, application/json;q=0.5", "required", True), ("APPLICATION/JSON", "required", True),
    ("application/json;q=0", "required", False), ("application/json; q=0.0", "required", False),
    (None, "negotiated", True), ("*/*", "negotiated", True), ("application/*", "negotiated", True),
    ("text/html", "negotiated", False), ("text/html, */*;q=0", "negotiated", False),
    ("text/html", "off", True),
])
def test_acceptable(header: str | None, mode: Any, ok: bool) -> None:
    assert acceptable(header, mode) is ok


async def test_call_lists_refuses_requests_that_do_not_ask_for_json(sim: Simulator) -> None:
    # skip_auto_headers: aiohttp would otherwise send Accept: */* on its own
    async with aiohttp.ClientSession(skip_auto_headers=("Accept",)) as bare:
        for method, path, kwargs in (
            ("GET", "/.well-known/openid-configuration", {}),
            ("POST", "/auth/token", {"data": PASSWORD, "headers": BASIC}),
            ("POST", "/authentication/v1/token/access-key",
             {"json": {"accessKeyId": "ak-id", "accessKeySecret": "ak-secret"}}),
            ("GET", f"{API}/lists/call-lists", {}),
        ):
            for accept in (None, "*/*", "text/html"):
                extra = dict(kwargs.get("headers", {}))
                if accept is not None:
                    extra["Accept"] = accept
                async with bare.request(method, sim.url + path, **{**kwargs, "headers": extra}) as resp:
                    assert resp.status == 406, (method, path, accept)
                    body = await resp.json()
                assert body["error"] == "not_acceptable" and "No known way to render data" in body["message"]
        async with bare.post(sim.url + "/auth/token", data=PASSWORD,
                             headers={**BASIC, "Accept": "application/json"}) as resp:
            assert resp.status == 200
            token = (await resp.json())["access_token"]
        async with bare.get(f"{sim.url}{API}/lists/call-lists",
                            headers={**bearer(token), "Accept": "application/json"}) as resp:
            assert resp.status == 200
    async with aiohttp.ClientSession() as s, s.get(f"{sim.url}/_sim/requests") as resp:
        counts = (await resp.json())["byEndpoint"]
    assert counts["GET /.well-known/openid-configuration"] == {"406": 3}


async def test_v2_negotiates_unless_told_to_require_json(sim_factory: Callable[..., Any]) -> None:
    lenient = await sim_factory()
    strict = await sim_factory(SimulatorConfig(port=0, v2=V2Settings(accept="required")))
    async with aiohttp.ClientSession(skip_auto_headers=("Accept",)) as bare:
        async with bare.post(lenient.url + V2_TOKEN, data=V2_FORM) as resp:
            assert resp.status == 200  # the tutorial's requests client may send no Accept
        async with bare.post(lenient.url + V2_TOKEN, data=V2_FORM, headers={"Accept": "text/html"}) as resp:
            assert resp.status == 406
        async with bare.post(strict.url + V2_TOKEN, data=V2_FORM, headers={"Accept": "*/*"}) as resp:
            assert resp.status == 406
        async with bare.post(strict.url + V2_TOKEN, data=V2_FORM, headers={"Accept": "application/json"}) as resp:
            assert resp.status == 200


async def test_accept_off_serves_anything(sim_factory: Callable[..., Any]) -> None:
    sim = await sim_factory(SimulatorConfig(port=0, call_lists=CallListsSettings(accept="off")))
    async with aiohttp.ClientSession(skip_auto_headers=("Accept",)) as bare, \
            bare.get(sim.url + "/.well-known/openid-configuration") as resp:
        assert resp.status == 200
