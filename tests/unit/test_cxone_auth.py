"""Token cache: expiry margin, invalidation and one shared refresh; JWT claims."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from connector.cxone.auth import TokenCache, jwt_claims
from connector.cxone.exceptions import ProtocolError, ServerError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_callers_share_one_refresh() -> None:
    calls = 0
    gate = asyncio.Event()

    async def fetch() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return f"tok-{calls}", 3600.0

    cache = TokenCache(fetch)
    waiters = [asyncio.create_task(cache.get()) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiters)) == {"tok-1"}
    assert calls == 1


async def test_refreshes_sixty_seconds_before_expiry() -> None:
    clock, calls = Clock(), []

    async def fetch() -> tuple[str, float]:
        calls.append(clock.now)
        return f"tok-{len(calls)}", 3600.0

    cache = TokenCache(fetch, clock=clock)
    assert await cache.get() == "tok-1"
    clock.now = 3539.0
    assert await cache.get() == "tok-1"
    clock.now = 3540.0
    assert await cache.get() == "tok-2"


async def test_short_lived_tokens_refresh_at_half_life() -> None:
    clock = Clock()
    tokens = iter(["a", "b"])

    async def fetch() -> tuple[str, float]:
        return next(tokens), 4.0

    cache = TokenCache(fetch, clock=clock)
    assert await cache.get() == "a"
    clock.now = 1.9
    assert await cache.get() == "a"
    clock.now = 2.0
    assert await cache.get() == "b"


async def test_invalidate_only_drops_the_stale_token() -> None:
    n = 0

    async def fetch() -> tuple[str, float]:
        nonlocal n
        n += 1
        return f"tok-{n}", 3600.0

    cache = TokenCache(fetch)
    first = await cache.get()
    cache.invalidate(first)
    second = await cache.get()
    assert second == "tok-2"
    cache.invalidate(first)  # a late 401 for the old token must not force another refresh
    assert await cache.get() == "tok-2" and cache.refreshes == 2


async def test_fetch_errors_propagate_and_next_call_retries() -> None:
    attempts = 0

    async def fetch() -> tuple[str, float]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ServerError(503, "down")
        return "ok", 60.0

    cache = TokenCache(fetch)
    with pytest.raises(ServerError):
        await cache.get()
    assert await cache.get() == "ok"


def _jwt(claims: dict[str, object]) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part(claims)}.sig"


def test_jwt_claims() -> None:
    assert jwt_claims(_jwt({"tenantId": "tenant-1", "x": 1}))["tenantId"] == "tenant-1"
    with pytest.raises(ProtocolError):
        jwt_claims("opaque-token")
    with pytest.raises(ProtocolError):
        jwt_claims("a.!!!.c")
