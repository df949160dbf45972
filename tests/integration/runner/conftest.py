from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from grpc import aio

from model_runner.client import ChatMessage, GrpcRunnerClient, StreamDelta
from tests.support.runner_process import RunnerProcess, running_runner

SLOW = "/tps 20 /long 1000"  # 50 s of output: ends only when the test ends it


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerProcess]:
    """One fake-backend runner per test module, at full speed (tests slow it with `/tps`)."""
    with running_runner("--max-running", "8", "--max-queued", "8", "--grace-seconds", "2") as r:
        yield r


@pytest.fixture(params=["session", "call"])
async def client(
    runner: RunnerProcess, request: pytest.FixtureRequest
) -> AsyncIterator[GrpcRunnerClient]:
    """Chat streams over a shared ChatSession call (the default), or one ChatStream call each."""
    client = GrpcRunnerClient(
        runner.address,
        default_timeout_s=30,
        connect_timeout_s=5,
        sessions=request.param == "session",
    )
    yield client
    await client.close()


@pytest.fixture
async def channel(runner: RunnerProcess) -> AsyncIterator[aio.Channel]:
    """A raw channel for tests that look at status codes and metadata directly."""
    async with aio.insecure_channel(runner.address) as channel:
        yield channel


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 5.0, interval_s: float = 0.02
) -> None:
    """Polls an async condition until true; fails the test after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        # Polling is the point here: the runner offers no event to wait on for these states.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(interval_s)


async def text_of(client: GrpcRunnerClient, prompt: str) -> str:
    """The whole reply to `prompt`, through `chat_stream`."""
    parts = []
    async with contextlib.aclosing(client.chat_stream([ChatMessage("user", prompt)])) as events:
        async for event in events:
            if isinstance(event, StreamDelta):
                parts.append(event.text)
    return "".join(parts)


async def running_at_most(client: GrpcRunnerClient, n: int) -> bool:
    """At most `n` requests running or queued on the runner (its own load report)."""
    load = await client.get_load()
    return load.running + load.queued <= n
