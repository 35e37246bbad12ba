"""Helpers shared by the simulator tests (plain functions; fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp

V2_TOKEN = "/api/v2/oauth2/token"
BULK = "/api/v2/outbound/contactlistitems/bulkinsert"
EVENTS = "/api/v2/events"
API = "/inContactAPI/services/v34.0"
EVENT_TYPE = "outbound.contactlistitems.bulkinsert"


class FakeClock:
    """A settable epoch clock for tests."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def subscription(job_ids: list[str]) -> str:
    return json.dumps({"eventTypes": [EVENT_TYPE], "filters": {"jobIds": job_ids}})


async def v2_token(http: aiohttp.ClientSession, url: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "client_id": "connector", "client_secret": "connector-secret"}
    if scope is not None:
        form["scope"] = scope
    async with http.post(url + V2_TOKEN, data=form) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["access_token"])


async def cl_token(http: aiohttp.ClientSession, url: str) -> str:
    form = {"grant_type": "password", "username": "ak-id", "password": "ak-secret"}
    headers = {"Authorization": "Basic " + base64.b64encode(b"connector:connector-secret").decode()}
    async with http.post(url + "/auth/token", data=form, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def items(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"phoneNumber": f"+1415555{start + i:04d}", "firstName": "A", "lastName": "B",
             "email": "a@example.com", "customFields": {"source": "test"}} for i in range(n)]


def csv_file(rows: list[tuple[str, str]], header: str = "externalId,phone") -> str:
    text = header + "\n" + "".join(f"{a},{b}\n" for a, b in rows)
    return base64.b64encode(text.encode()).decode()


async def wait_job(
    http: aiohttp.ClientSession, url: str, job_id: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Poll the inspection API until the job ends; returns its view."""
    async with asyncio.timeout(timeout):
        while True:
            async with http.get(f"{url}/_sim/jobs/{job_id}") as resp:
                job = await resp.json()
            if job["status"] in ("COMPLETED", "FAILED", "ABORTED"):
                return dict(job)
            await asyncio.sleep(0.02)


async def ws_frames_until_terminal(ws: aiohttp.ClientWebSocketResponse, job_ids: set[str],
                                   timeout: float = 10.0) -> list[dict[str, Any]]:
    """Read event frames until every job id has a terminal event."""
    frames: list[dict[str, Any]] = []
    pending = set(job_ids)
    async with asyncio.timeout(timeout):
        while pending:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            frames.append(frame)
            data = frame.get("data", {})
            if data.get("status") in ("COMPLETED", "FAILED", "ABORTED"):
                pending.discard(data["jobId"])
    return frames
