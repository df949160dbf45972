"""`webui-backend serve` with WEB_CONCURRENCY=2 and the real local Redis: login attempts made
on both workers count against one limit, and a successful login on one worker resets the
account's count for both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.integration.backend.streams_support import (
    REDIS_URL,
    echo_words,
    fresh_redis_prefix,
)
from tests.integration.backend.turn_client import sse_events
from tests.support.accounts import Account, signed_in
from tests.support.backend_process import TEST_EMAIL, TEST_PASSWORD, BackendProcess
from tests.support.runner_process import RunnerProcess, running_runner
from tests.support.workers import hub_worker_pids, serving_workers

_PER_ACCOUNT = 4


@pytest.fixture
def runner() -> Iterator[RunnerProcess]:
    with running_runner("--backend", "fake") as process:
        yield process


@pytest.fixture
async def redis() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    async with fresh_redis_prefix("limits") as found:
        yield found


@pytest.fixture
def backend(
    runner: RunnerProcess, redis: tuple[aioredis.Redis, str], tmp_path: Path
) -> Iterator[BackendProcess]:
    env = {
        "WEB_CONCURRENCY": "2",
        "WEBUI_REDIS_URL": REDIS_URL,
        "WEBUI_REDIS_PREFIX": redis[1],
        "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0",
        "WEBUI_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE": str(_PER_ACCOUNT),
        "WEBUI_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE": "1000",
    }
    with serving_workers(runner.address, tmp_path / "data", env) as process:
        yield process


async def served_by(
    http: httpx.AsyncClient, account: Account, redis: tuple[aioredis.Redis, str]
) -> str:
    """The worker behind the client's one kept-alive connection: the one that generated a
    turn sent on it (the hub records it)."""
    async with http.stream(
        "POST", "/api/turns", json={"content": echo_words(2)}, headers=account.headers
    ) as sse:
        events = [event async for _, event in sse_events(sse)]
    assert events[-1]["type"] == "turn.finished"
    client, prefix = redis
    worker = await client.hget(f"{prefix}turn:{events[0]['turn_id']}:meta", "worker")  # type: ignore[misc]
    assert isinstance(worker, bytes)
    return worker.decode()


async def client_on_worker(
    stack: AsyncExitStack,
    backend: BackendProcess,
    account: Account,
    redis: tuple[aioredis.Redis, str],
    wanted: set[str],
) -> tuple[str, httpx.AsyncClient]:
    """An HTTP client whose single connection one of `wanted` workers accepted."""
    async with asyncio.timeout(60):
        while True:
            http = httpx.AsyncClient(
                base_url=backend.base_url,
                timeout=30,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            stack.push_async_callback(http.aclose)
            worker = await served_by(http, account, redis)
            if worker in wanted:
                return worker, http
            await http.aclose()


async def login(http: httpx.AsyncClient, password: str) -> httpx.Response:
    response = await http.post("/api/auth/login", json={"email": TEST_EMAIL, "password": password})
    # Keep the client on bearer credentials only (a cookie session would ask for CSRF).
    http.cookies.clear()
    return response


async def test_login_attempts_on_both_workers_share_one_limit(
    backend: BackendProcess, redis: tuple[aioredis.Redis, str]
) -> None:
    account = await signed_in(backend)
    workers = set(hub_worker_pids(backend.service))
    assert len(workers) == 2
    async with AsyncExitStack() as stack:
        first, a = await client_on_worker(stack, backend, account, redis, workers)
        _, b = await client_on_worker(stack, backend, account, redis, workers - {first})

        # Three failures spread over both workers, then the owner gets in on the second:
        # the account's count is cleared for both.
        statuses = [(await login(http, "wrong-password")).status_code for http in (a, b, a)]
        assert statuses == [401] * 3
        assert (await login(b, TEST_PASSWORD)).status_code == 200

        # Each worker alone would allow 4 a minute; together they allow 4.
        statuses = [(await login(http, "wrong-password")).status_code for http in (a, b) * 2]
        assert statuses == [401] * _PER_ACCOUNT
        for http in (a, b):
            refused = await login(http, TEST_PASSWORD)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 60

        # The connections stayed where they were, so both workers were asked throughout.
        assert {await served_by(a, account, redis), await served_by(b, account, redis)} == workers
