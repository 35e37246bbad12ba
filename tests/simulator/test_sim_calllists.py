"""Profile call-lists over real sockets: discovery, token, lists, uploads, jobs, DNC, limits."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from simhelpers import API, FakeClock, bearer, cl_token, csv_file, wait_job

from connector.simulator import JobSettings, LimitSettings, Simulator, SimulatorConfig
from connector.simulator.tokens import decode_jwt

MAPPING = {"destinationMappings": [{"fieldName": "PhoneNumber", "fieldValue": "phone"}]}
BASIC = {"Authorization": "Basic " + base64.b64encode(b"connector:connector-secret").decode()}


async def create_list(http: aiohttp.ClientSession, url: str, token: str, name: str = "crm") -> int:
    async with http.post(f"{url}{API}/lists/call-lists?listName={name}&externalIdColumn=externalId"
                         "&firstNameColumn=first", json=MAPPING, headers=bearer(token)) as resp:
        assert resp.status == 200, await resp.text()
        return int((await resp.json())["listId"])


async def upload(http: aiohttp.ClientSession, url: str, token: str, list_id: int, file: str,
                 file_name: str | None = "f.csv", **extra: Any) -> aiohttp.ClientResponse:
    body: dict[str, Any] = {"listFile": file, "skillId": 42, "defaultTimeZone": "UTC", **extra}
    if file_name:
        body["fileName"] = file_name
    resp = await http.post(f"{url}{API}/lists/call-lists/{list_id}/upload", json=body, headers=bearer(token))
    await resp.read()
    return resp


async def test_discovery_token_and_api_endpoint(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get(sim.url + "/.well-known/openid-configuration") as resp:
        oidc = await resp.json()
    assert oidc["token_endpoint"] == f"{sim.url}/auth/token"
    # Client credentials in the body this time, and an access key secret holding '='.
    form = {"grant_type": "password", "username": "ak-id", "password": "ak-secret",
            "client_id": "connector", "client_secret": "connector-secret"}
    async with http.post(oidc["token_endpoint"], data=form) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    claims = decode_jwt(body["access_token"], b"simulator-jwt-key")
    assert claims["tenantId"] == "tenant-1" and claims["exp"] - claims["iat"] == 3600
    async with http.get(f"{sim.url}/.well-known/cxone-configuration?tenantId={claims['tenantId']}") as resp:
        assert await resp.json() == {"api_endpoint": sim.url, "area": "sim", "tenantId": "tenant-1"}
    async with http.get(f"{sim.url}/.well-known/cxone-configuration?tenantId=other") as resp:
        assert resp.status == 404
    async with http.get(f"{sim.url}/.well-known/cxone-configuration") as resp:
        assert resp.status == 400


@pytest.mark.parametrize(("form", "headers", "status", "error"), [
    ({"grant_type": "password", "username": "ak-id", "password": "ak-secret"}, {}, 401, "invalid_client"),
    ({"grant_type": "password", "username": "ak-id", "password": "wrong"}, BASIC, 400, "invalid_grant"),
    ({"grant_type": "password", "username": "other", "password": "ak-secret"}, BASIC, 400, "invalid_grant"),
    ({"grant_type": "client_credentials"}, BASIC, 400, "unsupported_grant_type"),
    ({"grant_type": "password", "username": "ak-id", "password": "ak-secret"},
     {"Authorization": "Basic " + base64.b64encode(b"connector:bad").decode()}, 401, "invalid_client"),
])
async def test_token_refusals(sim: Simulator, http: aiohttp.ClientSession, form: dict[str, str],
                              headers: dict[str, str], status: int, error: str) -> None:
    async with http.post(sim.url + "/auth/token", data=form, headers=headers) as resp:
        assert resp.status == status
        assert (await resp.json())["error"] == error


async def test_upload_job_lands_records_with_canonical_phones(sim: Simulator,
                                                              http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    list_id = await create_list(http, sim.url, token)
    assert await create_list(http, sim.url, token) == list_id  # same name: same list
    rows = [("c1", "+1 (415) 555-1001"), ("c2", "+14155551002"), ("c3", "14155551001")]
    resp = await upload(http, sim.url, token, list_id, csv_file(rows))
    assert resp.status == 200
    job_id = (await resp.json())["jobId"]
    await wait_job(http, sim.url, job_id)
    async with http.get(f"{sim.url}{API}/lists/call-lists/jobs/{job_id}", headers=bearer(token)) as r:
        job = (await r.json())["uploadJobs"][0]
    assert job["jobId"] == job_id and job["listId"] == list_id
    assert job["isComplete"] and not job["isCancelled"]
    assert job["completedDate"] and job["submitDate"] and job["startDate"] and job["status"] == "COMPLETED"
    contacts = sim.state.lists[str(list_id)].contacts
    assert sorted(contacts) == ["14155551001", "14155551002"]  # upsert by phone
    assert contacts["14155551001"]["externalId"] == "c3"
    v31 = f"{sim.url}/inContactAPI/services/v31.0/lists/call-lists"
    async with http.get(v31, headers=bearer(token)) as r:
        assert (await r.json())["callingLists"][0]["recordCount"] == 2  # any vNN.0 works


async def test_repeated_file_name_returns_the_original_job(sim: Simulator,
                                                           http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    list_id = await create_list(http, sim.url, token)
    first = await (await upload(http, sim.url, token, list_id, csv_file([("c1", "14155551001")]))).json()
    replay = await upload(http, sim.url, token, list_id, csv_file([("c9", "14155551009")]))
    assert (await replay.json())["jobId"] == first["jobId"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = await (await upload(http, sim.url, token, list_id, csv_file([("c1", "14155551001")]),
                                file_name="g.csv")).json()
    assert other["jobId"] != first["jobId"]
    assert sim.state.replays["call-lists"] == 1


async def test_cancel_an_upload_job(sim_factory: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(SimulatorConfig(port=0, jobs=JobSettings(items_per_second=1)))
    token = await cl_token(http, sim.url)
    list_id = await create_list(http, sim.url, token)
    job_id = (await (await upload(http, sim.url, token, list_id, csv_file([("c1", "14155551001")] * 5)))
              .json())["jobId"]
    url = f"{sim.url}{API}/lists/call-lists/jobs/{job_id}"
    async with http.delete(url, headers=bearer(token)) as resp:
        assert resp.status == 200
        job = (await resp.json())["uploadJobs"][0]
    assert job["isCancelled"] and job["isComplete"] and job["status"] == "ABORTED"
    async with http.delete(url, headers=bearer(token)) as resp:
        assert resp.status == 409
    async with http.delete(f"{sim.url}{API}/lists/call-lists/jobs/nope", headers=bearer(token)) as resp:
        assert resp.status == 404
    assert sim.state.lists[str(list_id)].contacts == {}


@pytest.mark.parametrize(("body", "fragment"), [
    ({"listFile": "%%%"}, "base64"),
    ({"listFile": base64.b64encode(b"\xff\xfeid").decode()}, "UTF-8"),
    ({"listFile": base64.b64encode(b"id,phone\n1,2\n").decode()}, "no column 'externalId'"),
    ({"listFile": base64.b64encode(b"externalId,phone\n1,abc\n").decode()}, "row 2"),
    ({"listFile": base64.b64encode(b'externalId,phone\n1,"14\n').decode()}, "CSV"),
    ({"listFile": 5}, "listFile must be a string"),
    ({"fileName": "x"}, "listFile is required"),
    ({"listFile": "", "forceOverwrite": "yes"}, "forceOverwrite must be a boolean"),
    ({"listFile": "", "surprise": 1}, "surprise"),
])
async def test_bad_uploads_are_400_naming_the_problem(sim: Simulator, http: aiohttp.ClientSession,
                                                      body: dict[str, Any], fragment: str) -> None:
    token = await cl_token(http, sim.url)
    list_id = await create_list(http, sim.url, token)
    async with http.post(f"{sim.url}{API}/lists/call-lists/{list_id}/upload", json=body,
                         headers=bearer(token)) as resp:
        assert resp.status == 400
        assert fragment in (await resp.json())["message"]


async def test_upload_to_an_unknown_list_is_404(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    assert (await upload(http, sim.url, token, 999, csv_file([("c", "1415")]))).status == 404


@pytest.mark.parametrize(("query", "body", "fragment"), [
    ("externalIdColumn=x", MAPPING, "listName"),
    ("listName=a", MAPPING, "externalIdColumn"),
    ("listName=a&externalIdColumn=x", {"destinationMappings": []}, "destinationMappings"),
    ("listName=a&externalIdColumn=x", {"destinationMappings": [{"fieldName": "FirstName",
                                                                "fieldValue": "f"}]}, "PhoneNumber"),
])
async def test_bad_list_creation(sim: Simulator, http: aiohttp.ClientSession, query: str, body: Any,
                                 fragment: str) -> None:
    token = await cl_token(http, sim.url)
    url = f"{sim.url}{API}/lists/call-lists?{query}"
    async with http.post(url, json=body, headers=bearer(token)) as resp:
        assert resp.status == 400
        assert fragment in (await resp.json())["message"]


async def test_500000_records_limit(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    list_id = await create_list(http, sim.url, token)
    text = "externalId,phone\n" + "".join(f"{i},1415{i:07d}\n" for i in range(500_001))
    resp = await upload(http, sim.url, token, list_id, base64.b64encode(text.encode()).decode())
    assert resp.status == 400
    err = await resp.json()
    assert err["error"] == "too_many_records" and err["limit"] == 500_000
    assert sim.state.jobs == {}


async def test_file_size_limit(sim_factory: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    # 256 MB is the default (see the config test); a small limit keeps this test fast.
    from connector.simulator import CallListsSettings

    sim = await sim_factory(SimulatorConfig(port=0, call_lists=CallListsSettings(max_file_bytes=1000)))
    token = await cl_token(http, sim.url)
    list_id = await create_list(http, sim.url, token)
    rows = [(f"c{i}", "14155551001") for i in range(100)]
    resp = await upload(http, sim.url, token, list_id, csv_file(rows))
    assert resp.status == 400 and (await resp.json())["error"] == "file_too_large"


async def test_tenant_record_limit_covers_lists_and_dnc(sim_factory: Callable[..., Any],
                                                         http: aiohttp.ClientSession) -> None:
    # The default is 1,000,000 (see the config test); a small one keeps this test fast.
    sim = await sim_factory(SimulatorConfig(port=0, limits=LimitSettings(tenant_active_records=4)))
    token = await cl_token(http, sim.url)
    list_id = await create_list(http, sim.url, token)
    resp = await upload(http, sim.url, token, list_id, csv_file([("a", "15550001"), ("b", "15550002")]))
    await wait_job(http, sim.url, (await resp.json())["jobId"])
    dnc = f"{sim.url}{API}/dnc-groups/7/records"
    async with http.post(dnc, json={"dncGroupRecords": [{"phoneNumber": "15550009"}]},
                         headers=bearer(token)) as r:
        assert r.status == 200 and (await r.json())["resultSet"]["errorCount"] == 0
    resp = await upload(http, sim.url, token, list_id, csv_file([("c", "15550003"), ("d", "15550004")]),
                        file_name="second.csv")
    assert resp.status == 400
    err = await resp.json()
    assert err["error"] == "tenant_record_limit" and err["limit"] == 4 and err["activeRecords"] == 3
    resp = await upload(http, sim.url, token, list_id, csv_file([("a", "15550001")]), file_name="upsert.csv")
    assert resp.status == 200  # an upsert of a known number adds nothing


async def test_admin_api_needs_a_valid_unexpired_token(sim_factory: Callable[..., Any],
                                                       http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    sim = await sim_factory(clock=clock)
    list_url = f"{sim.url}{API}/lists/call-lists"
    for headers in ({}, bearer("a.b.c"), bearer("garbage")):
        async with http.get(list_url, headers=headers) as resp:
            assert resp.status == 401
    from simhelpers import v2_token

    async with http.get(list_url, headers=bearer(await v2_token(http, sim.url))) as resp:
        assert resp.status == 401  # a v2 token is not a call-lists token
    token = await cl_token(http, sim.url)
    async with http.get(list_url, headers=bearer(token)) as resp:
        assert resp.status == 200
    clock.advance(3600)
    async with http.get(list_url, headers=bearer(token)) as resp:
        assert resp.status == 401 and (await resp.json())["reason"] == "expired"


async def test_bad_json_to_admin_api(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    headers = {**bearer(token), "Content-Type": "application/json"}
    async with http.post(f"{sim.url}{API}/lists/call-lists?listName=a&externalIdColumn=x", data=b"{",
                         headers=headers) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_json"
    async with http.post(f"{sim.url}{API}/lists/call-lists?listName=a&externalIdColumn=x",
                         data=json.dumps([1]), headers=headers) as resp:
        assert resp.status == 400
