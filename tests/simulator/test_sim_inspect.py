"""Inspection API and webhook receiver over real sockets."""

from __future__ import annotations

import aiohttp
from simhelpers import API, BULK, bearer, cl_token, csv_file, items, v2_token, wait_job

from connector.simulator import ErrorFaults, Simulator


async def test_lists_contacts_jobs_and_requests(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(3)},
                         headers={**bearer(token), "Idempotency-Key": "k"}) as resp:
        job_id = (await resp.json())["id"]
    async with http.post(sim.url + BULK, json={"contactListId": "L1", "items": items(3)},
                         headers={**bearer(token), "Idempotency-Key": "k"}) as resp:
        assert resp.status == 202
    await wait_job(http, sim.url, job_id)
    cl = await cl_token(http, sim.url)
    async with http.post(f"{sim.url}{API}/lists/call-lists?listName=n&externalIdColumn=externalId",
                         json={"destinationMappings": [{"fieldName": "PhoneNumber", "fieldValue": "phone"}]},
                         headers=bearer(cl)) as resp:
        list_id = str((await resp.json())["listId"])
    async with http.post(f"{sim.url}{API}/lists/call-lists/{list_id}/upload",
                         json={"listFile": csv_file([("e1", "14155550000")]), "fileName": "a"},
                         headers=bearer(cl)) as resp:
        await wait_job(http, sim.url, (await resp.json())["jobId"])

    async with http.get(sim.url + "/_sim/lists") as resp:
        lists = await resp.json()
    by_id = {lst["listId"]: lst for lst in lists["lists"]}
    assert by_id["L1"]["profile"] == "v2" and by_id["L1"]["contactCount"] == 3
    assert by_id[list_id]["profile"] == "call-lists" and by_id[list_id]["contactCount"] == 1
    assert lists["activeRecords"] == 4

    async with http.get(sim.url + "/_sim/lists/L1/contacts?offset=1&limit=1") as resp:
        page = await resp.json()
    assert [c["phoneNumber"] for c in page["contacts"]] == ["+14155550001"]
    assert page["contacts"][0]["jobId"] == job_id and page["contacts"][0]["firstName"] == "A"
    async with http.get(f"{sim.url}/_sim/lists/{list_id}/contacts") as resp:
        assert (await resp.json())["contacts"][0]["externalId"] == "e1"
    async with http.get(sim.url + "/_sim/lists/nope/contacts") as resp:
        assert resp.status == 404
    async with http.get(sim.url + "/_sim/lists/L1/contacts?limit=x") as resp:
        assert resp.status == 400

    async with http.get(sim.url + "/_sim/jobs?profile=v2") as resp:
        jobs = await resp.json()
    assert [(j["jobId"], j["status"], j["itemCount"]) for j in jobs["jobs"]] == [(job_id, "COMPLETED", 3)]
    assert jobs["countsByStatus"] == {"COMPLETED": 2}
    assert jobs["jobs"][0]["idempotencyKey"] == "k"
    async with http.get(sim.url + "/_sim/jobs/unknown") as resp:
        assert resp.status == 404

    async with http.get(sim.url + "/_sim/requests") as resp:
        reqs = await resp.json()
    assert reqs["byEndpoint"][f"POST {BULK}"] == {"202": 2}
    assert reqs["byEndpoint"]["POST /api/v2/oauth2/token"] == {"200": 1}
    assert reqs["idempotentReplays"] == {"total": 1, "byProfile": {"v2": 1}}
    assert not any(k.startswith("GET /_sim/") for k in reqs["byEndpoint"])

    async with http.get(sim.url + "/_sim/config") as resp:
        cfg = await resp.json()
    assert cfg["v2"]["client_secret"] == "<hidden>" and cfg["v2"]["client_id"] == "connector"

    async with http.post(sim.url + "/_sim/reset") as resp:
        assert resp.status == 200
    async with http.get(sim.url + "/_sim/lists") as resp:
        assert (await resp.json())["lists"] == []
    async with http.get(sim.url + "/_sim/requests") as resp:
        assert (await resp.json())["total"] == 0
    async with http.get(sim.url + "/_sim/health") as resp:
        assert (await resp.json()) == {"status": "ok"}


async def test_reset_restores_start_up_faults(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.configure_faults(errors=ErrorFaults(rate=1.0))
    async with http.get(sim.url + "/.well-known/openid-configuration") as resp:
        assert resp.status >= 500
    async with http.post(sim.url + "/_sim/reset") as resp:
        assert resp.status == 200
    async with http.get(sim.url + "/.well-known/openid-configuration") as resp:
        assert resp.status == 200
    assert sim.config.faults.errors.rate == 0


async def test_webhook_receiver_records_headers_and_fails_on_demand(sim: Simulator,
                                                                    http: aiohttp.ClientSession) -> None:
    hook = sim.url + "/_sim/webhooks/jobs"
    async with http.post(hook + "/fail?count=2&status=503") as resp:
        assert (await resp.json()) == {"name": "jobs", "failNext": 2, "status": 503}
    headers = {"X-Signature-SHA256": "abc123", "Idempotency-Key": "batch-1"}
    statuses = []
    for _ in range(3):
        async with http.post(hook, json={"jobs": ["j1"]}, headers=headers) as resp:
            statuses.append(resp.status)
    assert statuses == [503, 503, 200]
    async with http.get(hook) as resp:
        seen = await resp.json()
    assert seen["count"] == 3
    last = seen["deliveries"][-1]
    assert last["headers"]["X-Signature-SHA256"] == "abc123"
    assert last["headers"]["Idempotency-Key"] == "batch-1"
    assert last["body"] == '{"jobs": ["j1"]}' and last["answeredStatus"] == 200 and last["method"] == "POST"
    assert [d["answeredStatus"] for d in seen["deliveries"]] == [503, 503, 200]
    async with http.get(sim.url + "/_sim/webhooks") as resp:
        assert await resp.json() == {"jobs": 3}
    async with http.get(sim.url + "/_sim/requests") as resp:
        assert (await resp.json())["byEndpoint"]["POST /_sim/webhooks/{name}"] == {"200": 1, "503": 2}
    async with http.post(hook + "/fail?count=x") as resp:
        assert resp.status == 400
    async with http.get(sim.url + "/_sim/webhooks/never") as resp:
        assert (await resp.json())["deliveries"] == []
