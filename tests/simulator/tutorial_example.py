# ruff: noqa: E501, S113, E402, I001, W293
"""The tutorial's "Complete Working Example", verbatim except its URL constants and credentials.

Run by test_sim_tutorial.py against the simulator (CXONE_SIM_HOSTPORT=127.0.0.1:PORT).
Source: "Dynamically Updating NICE CXone Outbound Contact Lists with Python" (seed 000).
"""

import requests
import time
import json
import asyncio
import websockets
import aiohttp
from typing import List, Dict, Any, Set, Optional

# Configuration
# Changed from the tutorial: only the URL constants (the simulator's address, http/ws instead
# of https/wss) and the credentials (the simulator's defaults).
import os
CXONE_ORG = os.environ.get("CXONE_SIM_HOSTPORT", "127.0.0.1:8700")
CXONE_CLIENT_ID = "connector"
CXONE_CLIENT_SECRET = "connector-secret"
TOKEN_URL = f"http://{CXONE_ORG}/api/v2/oauth2/token"
SCOPES = "outbound:contactlistitem:write outbound:job:read events:subscribe"
BULK_INSERT_URL = f"http://{CXONE_ORG}/api/v2/outbound/contactlistitems/bulkinsert"
WEBSOCKET_URL = f"ws://{CXONE_ORG}/api/v2/events"
CONTACT_LIST_ID = "12345678-1234-1234-1234-123456789012"
CALLBACK_URL = f"http://{CXONE_ORG}/_sim/webhooks/tutorial"
MAX_CHUNK_SIZE = 10000

class CXoneAuth:
    def __init__(self) -> None:
        self.access_token: Optional[str] = None
        self.token_expiry: float = 0.0

    def get_token(self) -> str:
        if self.access_token and time.time() < self.token_expiry - 60:
            return self.access_token
        payload = {
            "grant_type": "client_credentials",
            "client_id": CXONE_CLIENT_ID,
            "client_secret": CXONE_CLIENT_SECRET,
            "scope": SCOPES
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        response = requests.post(TOKEN_URL, data=payload, headers=headers)
        response.raise_for_status()
        data = response.json()
        self.access_token = data["access_token"]
        self.token_expiry = time.time() + data["expires_in"]
        return self.access_token

def fetch_opted_in_contacts_from_crm() -> List[Dict[str, Any]]:
    return [
        {"phone": "+14155551001", "first_name": "Alice", "last_name": "Smith", "email": "alice@example.com"},
        {"phone": "+14155551002", "first_name": "Bob", "last_name": "Jones", "email": "bob@example.com"},
        {"phone": "+14155551003", "first_name": "Charlie", "last_name": "Davis", "email": "charlie@example.com"},
        {"phone": "+14155551004", "first_name": "Diana", "last_name": "Evans", "email": "diana@example.com"},
        {"phone": "+14155551005", "first_name": "Ethan", "last_name": "Frank", "email": "ethan@example.com"},
    ]

def load_dnc_registry() -> set:
    return {"+14155551002", "+14155551005"}

def apply_dnc_filter(contacts: List[Dict[str, Any]], dnc_set: set) -> List[Dict[str, Any]]:
    return [c for c in contacts if c["phone"] not in dnc_set]

def chunk_list(data: List[Dict[str, Any]], chunk_size: int) -> List[List[Dict[str, Any]]]:
    return [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]

def map_to_cxone_schema(contacts: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [
        {
            "phoneNumber": c["phone"],
            "firstName": c["first_name"],
            "lastName": c["last_name"],
            "email": c["email"],
            "customFields": {"source": "crm_sync_script", "optInDate": "2024-01-15T00:00:00Z"}
        }
        for c in contacts
    ]

def submit_bulk_insert(chunk: List[Dict[str, Any]]) -> str:
    token = CXoneAuth().get_token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    payload = {"contactListId": CONTACT_LIST_ID, "items": chunk}
    max_retries = 5
    for attempt in range(max_retries):
        response = requests.post(BULK_INSERT_URL, json=payload, headers=headers)
        if response.status_code == 202:
            return response.json()["id"]
        elif response.status_code == 429:
            retry_after = int(response.headers.get("Retry-After", 2 ** attempt))
            time.sleep(retry_after)
        else:
            response.raise_for_status()
    raise Exception("Max retries exceeded for 429 response")

class JobMonitor:
    def __init__(self, job_ids: List[str]) -> None:
        self.pending_jobs: Set[str] = set(job_ids)
        self.completed_jobs: Dict[str, Any] = {}

    async def subscribe(self) -> None:
        async with websockets.connect(WEBSOCKET_URL, ping_interval=20) as ws:
            subscription = {
                "eventTypes": ["outbound.contactlistitems.bulkinsert"],
                "filters": {"jobIds": list(self.pending_jobs)}
            }
            await ws.send(json.dumps(subscription))
            while self.pending_jobs:
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=30.0)
                    await self.process_event(json.loads(message))
                except asyncio.TimeoutError:
                    pass
                except websockets.exceptions.ConnectionClosed:
                    await self.subscribe()

    async def process_event(self, event: Dict[str, Any]) -> None:
        if event.get("eventType") != "outbound.contactlistitems.bulkinsert":
            return
        data = event.get("data", {})
        job_id = data.get("jobId")
        status = data.get("status")
        if job_id not in self.pending_jobs or status not in ("COMPLETED", "FAILED", "ABORTED"):
            return
        self.pending_jobs.discard(job_id)
        self.completed_jobs[job_id] = {"status": status, "progress": data.get("progress", 0)}
        if not self.pending_jobs:
            await self.trigger_callback()

    async def trigger_callback(self) -> None:
        payload = {"source": "cxone_outbound_sync", "jobs": self.completed_jobs, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(CALLBACK_URL, json=payload, timeout=10) as resp:
                    print(f"Callback status: {resp.status}")
            except Exception as e:
                print(f"Callback error: {e}")

if __name__ == "__main__":
    contacts = fetch_opted_in_contacts_from_crm()
    compliant = apply_dnc_filter(contacts, load_dnc_registry())
    chunks = chunk_list(compliant, MAX_CHUNK_SIZE)
    job_ids = []
    for idx, chunk in enumerate(chunks):
        job_ids.append(submit_bulk_insert(map_to_cxone_schema(chunk)))
        print(f"Submitted chunk {idx + 1}. Job: {job_ids[-1]}")
    
    asyncio.run(JobMonitor(job_ids).subscribe())
