"""Helpers for the streams-that-survive integration tests (real runner + backend processes)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from model_runner.client import GrpcRunnerClient
from tests.support.accounts import Account
from tests.support.backend_process import BackendProcess

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def echo_words(count: int, *, tokens_per_second: float | None = None, tag: str = "w") -> str:
    """A prompt for the fake backend whose reply is `count` numbered words, so a missing or
    repeated piece changes the text (`/tps R` paces this one request)."""
    words = " ".join(f"{tag}{i}" for i in range(1, count + 1))
    pace = f"/tps {tokens_per_second:g} " if tokens_per_second else ""
    return f"{pace}/echo {words}"


@asynccontextmanager
async def ws_session(backend: BackendProcess, account: Account) -> AsyncIterator[ClientConnection]:
    async with connect(backend.ws_url, additional_headers=account.headers, max_size=None) as ws:
        yield ws


async def recv_event(ws: ClientConnection, timeout_s: float = 30) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return event


def drop(ws: ClientConnection) -> None:
    """A dropped network: the TCP connection goes away without a close handshake."""
    ws.transport.abort()


@dataclass
class ReplyAssembly:
    """Rebuilds a reply from events the way a client must: a snapshot replaces the text,
    a delta appends; every seq must be greater than the last one seen (no duplicate)."""

    text: str = ""
    last_seq: int = 0
    finished: dict[str, Any] | None = None
    seqs: list[int] = field(default_factory=list)

    def add(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "error":
            raise AssertionError(f"error event: {event}")
        if "seq" not in event:
            return
        seq = event["seq"]
        assert seq > self.last_seq, f"seq {seq} after {self.last_seq}: a duplicate"
        self.seqs.append(seq)
        self.last_seq = seq
        if kind == "turn.snapshot":
            self.text = event["text"]
        elif kind == "turn.delta":
            self.text += event["text"]
        elif kind == "turn.finished":
            self.finished = event

    async def read_until_finished(self, ws: ClientConnection, timeout_s: float = 60) -> None:
        async with asyncio.timeout(timeout_s):
            while self.finished is None:
                self.add(await recv_event(ws))


async def runner_running(address: str) -> int:
    client = GrpcRunnerClient(address)
    try:
        return (await client.get_load()).running
    finally:
        await client.close()


async def wait_for_running(client: GrpcRunnerClient, running: int, timeout_s: float = 20) -> float:
    """Poll the runner's GetLoad until `running` sequences are active; returns the monotonic
    time at which that was first seen."""
    async with asyncio.timeout(timeout_s):
        while True:
            if (await client.get_load()).running == running:
                return time.perf_counter()
            await asyncio.sleep(0.002)


async def redis_or_skip(url: str = REDIS_URL) -> aioredis.Redis:
    """The local Redis; skipped when unreachable, except under CI=true where it must exist."""
    client: aioredis.Redis = aioredis.Redis.from_url(url)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        if os.environ.get("CI") == "true":
            raise AssertionError(f"Redis at {url} is required under CI: {exc}") from exc
        pytest.skip(f"Redis at {url} is not reachable: {exc}")
    return client


@asynccontextmanager
async def fresh_redis_prefix(label: str) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """The local Redis (see `redis_or_skip`) and a key prefix of this test's own, whose keys
    are deleted at the end."""
    client = await redis_or_skip()
    prefix = f"test-{label}-{uuid.uuid4().hex[:10]}:"
    try:
        yield client, prefix
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)
