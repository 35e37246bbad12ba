"""DNC groups over real sockets: per-record results inside a 200, chosen numbers failing (in
process and through ``/_sim/faults``), paged listing, search, and what stays dialable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from simhelpers import API, bearer, cl_token, csv_file, wait_job

from connector.simulator import Simulator, SimulatorConfig
from connector.simulator.config import CallListsSettings, DncFaults

MAPPING = {"destinationMappings": [{"fieldName": "PhoneNumber", "fieldValue": "phone"}]}


def records(*phones: object) -> dict[str, Any]:
    return {"dncGroupRecords": [{"phoneNumber": p} for p in phones]}


async def test_add_answers_per_record_and_invalid_numbers_fail_inside_a_200(
        sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    url = f"{sim.url}{API}/dnc-groups/12/records"
    body = records(14155551001, "+1 415 555 1002", "x", 5, True, None)
    body["dncGroupRecords"][0]["expiredDate"] = "2030-01-01T00:00:00Z"
    async with http.post(url, json=body, headers=bearer(token)) as resp:
        assert resp.status == 200
        answer = await resp.json()
    results = answer["resultSet"]["recordResults"]
    assert answer["resultSet"]["errorCount"] == 4
    assert [r["success"] for r in results] == [True, True, False, False, False, False]
    assert [r["formattedPhone"] for r in results[:2]] == ["14155551001", "14155551002"]
    assert [r["phoneNumber"] for r in results] == [14155551001, "+1 415 555 1002", "x", 5, True, None]
    assert results[0]["error"] is None and "Invalid phone number" in results[2]["error"]
    assert sim.state.dnc.groups["12"]["14155551001"].expired_date == "2030-01-01T00:00:00Z"
    assert sorted(sim.state.dnc.groups["12"]) == ["14155551001", "14155551002"]
    for bad in ({"dncGroupRecords": []}, {"dncGroupRecords": [1]}, [1],
                {"dncGroupRecords": [{"phoneNumber": 1, "expiredDate": 3}]}):
        async with http.post(url, json=bad, headers=bearer(token)) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "invalid_body"


async def test_chosen_numbers_fail_in_process_and_through_the_control_api(
        sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    url = f"{sim.url}{API}/dnc-groups/7/records"
    sim.configure_faults(dnc=DncFaults(fail_numbers=("+1 (415) 555-1001",), fail_times=1))
    async with http.post(url, json=records(14155551001, 14155551002), headers=bearer(token)) as resp:
        first = (await resp.json())["resultSet"]
    assert first["errorCount"] == 1 and [r["success"] for r in first["recordResults"]] == [False, True]
    assert "14155551001" in first["recordResults"][0]["error"]  # CXone's texts quote the number
    assert "14155551001" not in sim.state.dnc.groups["7"]
    async with http.post(url, json=records(14155551001), headers=bearer(token)) as resp:
        assert (await resp.json())["resultSet"]["errorCount"] == 0  # fail_times=1: the retry works
    change = {"dnc": {"fail_numbers": ["14155551002"], "fail_times": 0}}
    async with http.post(f"{sim.url}/_sim/faults", json=change) as resp:
        assert resp.status == 200 and (await resp.json())["dnc"]["fail_numbers"] == ["14155551002"]
    for _ in range(2):  # fail_times=0: every attempt fails, expire included
        async with http.delete(url, json=records(14155551002, 14155551001), headers=bearer(token)) as resp:
            answer = await resp.json()
        assert answer["errorCount"] == 1 and answer["recordResults"][0]["success"] is False
    assert "phoneNumber" not in answer["recordResults"][0]  # the expire answer names no number
    assert sorted(sim.state.dnc.groups["7"]) == ["14155551002"]


async def test_expire_of_an_absent_number_succeeds(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    async with http.delete(f"{sim.url}{API}/dnc-groups/3/records", json=records(14155559999),
                           headers=bearer(token)) as resp:
        assert resp.status == 200
        assert await resp.json() == {"errorCount": 0, "recordResults": [
            {"success": True, "error": None, "formattedPhone": "14155559999"}]}


async def test_records_are_listed_page_by_page(sim_factory: Callable[..., Any],
                                               http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(SimulatorConfig(port=0, call_lists=CallListsSettings(max_page_size=3)))
    token = await cl_token(http, sim.url)
    url = f"{sim.url}{API}/dnc-groups/9/records"
    async with http.post(url, json=records(*range(14155550001, 14155550008)), headers=bearer(token)) as resp:
        assert resp.status == 200
    pages = []
    for skip in (0, 3, 6, 9):
        async with http.get(url, params={"top": "50", "skip": str(skip)}, headers=bearer(token)) as resp:
            pages.append((await resp.json())["resultSet"])
    assert {p["totalRecords"] for p in pages} == {7}
    assert [len(p["dncRecords"]) for p in pages] == [3, 3, 1, 0]  # top is cut to max_page_size
    first = pages[0]["dncRecords"][0]
    assert set(first) == {"recordId", "phoneNumber", "formattedPhone", "expiredDate", "dateCollected"}
    assert first["phoneNumber"] == "14155550001" and first["expiredDate"] is None
    ids = [r["recordId"] for p in pages for r in p["dncRecords"]]
    assert len(set(ids)) == 7
    async with http.get(url, params={"top": "-1"}, headers=bearer(token)) as resp:
        assert resp.status == 400
    async with http.get(f"{sim.url}{API}/dnc-groups/none/records", headers=bearer(token)) as resp:
        assert (await resp.json())["resultSet"] == {"totalRecords": 0, "dncRecords": []}


async def test_search_finds_the_groups_of_a_number(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    for group in ("12", "ops"):
        async with http.post(f"{sim.url}{API}/dnc-groups/{group}/records", json=records(14155551001),
                             headers=bearer(token)) as resp:
            assert resp.status == 200
    async with http.post(f"{sim.url}{API}/dnc-groups/search?phoneNumber=%2B14155551001",
                         headers=bearer(token)) as resp:
        found = (await resp.json())["searchResults"]
    assert [(f["dncGroupId"], f["formattedPhone"]) for f in found] == [(12, "14155551001"),
                                                                       ("ops", "14155551001")]
    assert {"dncGroupName", "expiredDate", "dateCollected", "lastUpdateTime"} <= set(found[0])
    async with http.post(f"{sim.url}{API}/dnc-groups/search?phoneNumber=14155550000",
                         headers=bearer(token)) as resp:
        assert (await resp.json())["searchResults"] == []
    async with http.post(f"{sim.url}{API}/dnc-groups/search", headers=bearer(token)) as resp:
        assert resp.status == 400


async def test_a_failed_record_leaves_its_number_dialable(sim: Simulator, http: aiohttp.ClientSession) -> None:
    token = await cl_token(http, sim.url)
    async with http.post(f"{sim.url}{API}/lists/call-lists?listName=crm&externalIdColumn=externalId",
                         json=MAPPING, headers=bearer(token)) as resp:
        list_id = (await resp.json())["listId"]
    async with http.post(f"{sim.url}{API}/lists/call-lists/{list_id}/upload", headers=bearer(token),
                         json={"listFile": csv_file([("a", "14155551001"), ("b", "14155551002")])}) as resp:
        await wait_job(http, sim.url, (await resp.json())["jobId"])
    sim.configure_faults(dnc=DncFaults(fail_numbers=("14155551001",)))
    async with http.post(f"{sim.url}{API}/dnc-groups/1/records", json=records(14155551001, 14155551002),
                         headers=bearer(token)) as resp:
        assert (await resp.json())["resultSet"]["errorCount"] == 1
    async with http.get(f"{sim.url}/_sim/lists/{list_id}/contacts?dialable=true") as resp:
        view = await resp.json()
    assert [c["phoneNumber"] for c in view["contacts"]] == ["14155551001"]
    async with http.get(f"{sim.url}/_sim/dnc-groups") as resp:
        groups = await resp.json()
    assert [r["phoneNumber"] for r in groups["1"]] == ["14155551002"]
