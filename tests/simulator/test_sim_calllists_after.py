"""call-lists after delivery, over real sockets: the access-key token call, list record counts
and rejected rows, time zones per record (column or default), and removeProspects; v2 time
zones in the inspection view."""

from __future__ import annotations

import base64

import aiohttp
from simhelpers import API, BULK, bearer, cl_token, csv_file, v2_token, wait_job

from connector.simulator import Simulator
from connector.simulator.config import UploadFaults
from connector.simulator.tokens import decode_jwt

MAPPING = {"destinationMappings": [{"fieldName": "PhoneNumber", "fieldValue": "phone"}]}
ACCESS_KEY = "/authentication/v1/token/access-key"


async def new_list(http: aiohttp.ClientSession, sim: Simulator, token: str, query: str = "") -> int:
    async with http.post(f"{sim.url}{API}/lists/call-lists?listName=crm&externalIdColumn=externalId{query}",
                         json=MAPPING, headers=bearer(token)) as resp:
        assert resp.status == 200, await resp.text()
        return int((await resp.json())["listId"])


async def upload(http: aiohttp.ClientSession, sim: Simulator, token: str, list_id: int, file: str,
                 name: str, **extra: object) -> dict[str, object]:
    body = {"listFile": file, "fileName": name, **extra}
    async with http.post(f"{sim.url}{API}/lists/call-lists/{list_id}/upload", json=body,
                         headers=bearer(token)) as resp:
        assert resp.status == 200, await resp.text()
        return await wait_job(http, sim.url, (await resp.json())["jobId"])


async def counts(http: aiohttp.ClientSession, sim: Simulator, token: str, list_id: int) -> dict[str, int]:
    async with http.get(f"{sim.url}{API}/lists/call-lists/{list_id}", headers=bearer(token)) as resp:
        assert resp.status == 200
        result = (await resp.json())["resultSet"]
    return {k: result[k] for k in ("totalRecords", "validRecords", "invalidRecords")}


async def test_access_key_token_call(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.url + ACCESS_KEY, json={"accessKeyId": "ak-id", "accessKeySecret": "ak-secret"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["refresh_token"]
    for name in ("access_token", "id_token"):
        assert decode_jwt(body[name], b"simulator-jwt-key")["tenantId"] == "tenant-1"
    async with http.get(f"{sim.url}{API}/lists/call-lists", headers=bearer(body["access_token"])) as resp:
        assert resp.status == 200  # a call-lists token like the password grant's
    for wrong in ({"accessKeyId": "ak-id", "accessKeySecret": "nope"},
                  {"accessKeyId": "other", "accessKeySecret": "ak-secret"}):
        async with http.post(sim.url + ACCESS_KEY, json=wrong) as resp:
            assert resp.status == 401 and (await resp.json())["error"] == "invalid_access_key"
    for bad in ({"accessKeyId": "ak-id"}, ["ak-id"], {"accessKeyId": 1, "accessKeySecret": "ak-secret"}):
        async with http.post(sim.url + ACCESS_KEY, json=bad) as resp:
            assert resp.status == 400


async def test_list_counts_and_a_rejected_share(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    list_id = await new_list(http, sim, token)
    assert await counts(http, sim, token, list_id) == {"totalRecords": 0, "validRecords": 0, "invalidRecords": 0}
    await upload(http, sim, token, list_id, csv_file([(f"c{i}", f"1415555{i:04d}") for i in range(4)]), "a.csv")
    assert await counts(http, sim, token, list_id) == {"totalRecords": 4, "validRecords": 4, "invalidRecords": 0}
    sim.configure_faults(uploads=UploadFaults(reject_fraction=0.25))
    rows = [(f"d{i}", f"1415666{i:04d}") for i in range(8)]
    await upload(http, sim, token, list_id, csv_file(rows), "b.csv")
    assert await counts(http, sim, token, list_id) == {"totalRecords": 12, "validRecords": 10, "invalidRecords": 2}
    async with http.get(f"{sim.url}/_sim/lists/{list_id}/contacts?invalid=true") as resp:
        rejected = (await resp.json())["contacts"]
    async with http.get(f"{sim.url}/_sim/lists/{list_id}/contacts?dialable=true") as resp:
        dialable = {c["phoneNumber"] for c in (await resp.json())["contacts"]}
    assert len(rejected) == 2 and all(c["valid"] is False and c["rejectReason"] for c in rejected)
    assert not dialable & {c["phoneNumber"] for c in rejected} and len(dialable) == 10
    async with http.get(f"{sim.url}{API}/lists/call-lists", headers=bearer(token)) as resp:
        [listed] = (await resp.json())["callingLists"]
    assert (listed["totalRecords"], listed["invalidRecords"]) == (12, 2)
    async with http.get(f"{sim.url}{API}/lists/call-lists/999", headers=bearer(token)) as resp:
        assert resp.status == 404


async def test_time_zone_column_then_default(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    list_id = await new_list(http, sim, token, "&timeZoneColumn=tz&zipColumn=zip&somethingElse=x")
    text = "externalId,phone,tz,zip\na,14155551001,America/Chicago,60601\nb,14155551002,,94105\n"
    await upload(http, sim, token, list_id, base64.b64encode(text.encode()).decode(), "tz.csv",
                 defaultTimeZone="America/Los_Angeles")
    async with http.get(f"{sim.url}/_sim/lists/{list_id}/contacts") as resp:
        view = await resp.json()
    assert view["columnMappings"] == {"timeZoneColumn": "tz", "zipColumn": "zip"}  # unknown ones ignored
    assert {c["externalId"]: c["timeZone"] for c in view["contacts"]} == {
        "a": "America/Chicago", "b": "America/Los_Angeles"}
    other = await new_list(http, sim, token)  # the same name: the same list, mappings unchanged
    assert other == list_id
    await upload(http, sim, token, list_id, csv_file([("c", "14155551003")]), "none.csv")
    assert sim.state.lists[str(list_id)].contacts["14155551003"]["timeZone"] is None


async def test_remove_prospects(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    list_id = await new_list(http, sim, token)
    await upload(http, sim, token, list_id, csv_file([("c1", "14155551001"), ("c2", "14155551002"),
                                                      ("3", "14155551003")]), "p.csv")
    url = f"{sim.url}{API}/lists/call-lists/crm/removeProspects"
    body = {"prospectsToRemove": [{"externalId": "c1"}, {"externalId": 3}, {"externalId": "zz"}]}
    async with http.delete(url, json=body, headers=bearer(token)) as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert answer == {"successfulRecords": [{"externalId": "c1", "resultCode": "Removed"},
                                            {"externalId": "3", "resultCode": "Removed"}],
                      "failedRecords": [{"externalId": "zz", "resultCode": "NotFound"}]}
    assert list(sim.state.lists[str(list_id)].contacts) == ["14155551002"]
    async with http.delete(f"{sim.url}{API}/lists/call-lists/unknown/removeProspects", json=body,
                           headers=bearer(token)) as resp:
        assert resp.status == 404
    for bad in ({"prospectsToRemove": []}, {"prospectsToRemove": [{"externalId": True}]}, {}):
        async with http.delete(url, json=bad, headers=bearer(token)) as resp:
            assert resp.status == 400


async def test_v2_inspection_shows_the_time_zone_custom_field(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await v2_token(http, sim.url)
    items = [{"phoneNumber": "+14155551001", "customFields": {"timeZone": "America/New_York"}},
             {"phoneNumber": "+14155551002"}]
    async with http.post(sim.url + BULK, json={"contactListId": "L", "items": items}, headers=bearer(token)) as resp:
        job = (await resp.json())["id"]
    await wait_job(http, sim.url, job)
    async with http.get(f"{sim.url}/_sim/lists/L/contacts") as resp:
        contacts = (await resp.json())["contacts"]
    assert [(c["timeZone"], c["customFields"].get("timeZone")) for c in contacts] == [
        ("America/New_York", "America/New_York"), (None, None)]
