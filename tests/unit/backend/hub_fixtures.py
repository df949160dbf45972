"""The hub implementations under test: in-process and Redis (the real local server).

Redis tests use a unique key prefix per test and delete its keys afterwards. Without a
reachable Redis they skip locally, and fail when CI=true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from webui_backend.services.redis_turn_hub import RedisTurnHub
from webui_backend.services.turn_hub import InProcessTurnHub, TurnHub

REDIS_URL = os.environ.get("WEBUI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def redis_or_skip() -> None:
    """Skip (locally) or fail (CI=true) when the test Redis cannot be reached."""
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        reason = f"Redis at {REDIS_URL} is unreachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        await client.aclose()


async def delete_prefix(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["in_process", "redis"])
async def hub_factory(request: pytest.FixtureRequest) -> AsyncIterator[HubFactory]:
    factory = HubFactory(request.param)
    if request.param == "redis":
        await redis_or_skip()
    try:
        yield factory
    finally:
        await factory.aclose()


class HubFactory:
    """Makes hubs of one kind; Redis hubs made by one factory share a prefix (two workers)."""

    def __init__(self, kind: str, **options: int | float) -> None:
        self.kind = kind
        self.prefix = f"webui-test-{uuid.uuid4().hex[:10]}:"
        self._hubs: list[TurnHub] = []

    async def make(self, *, max_events_per_turn: int = 4096, block_ms: int = 200) -> TurnHub:
        """`block_ms`: how long a Redis hub's remote reader waits for new events before it
        looks whether the turn closed or its worker died."""
        hub: TurnHub
        if self.kind == "redis":
            hub = RedisTurnHub(
                REDIS_URL,
                prefix=self.prefix,
                max_events_per_turn=max_events_per_turn,
                block_ms=block_ms,
            )
        else:
            hub = InProcessTurnHub(max_events_per_turn=max_events_per_turn)
        await hub.start()
        self._hubs.append(hub)
        return hub

    async def aclose(self) -> None:
        for hub in self._hubs:
            await hub.aclose()
        if self.kind == "redis":
            await delete_prefix(self.prefix)
