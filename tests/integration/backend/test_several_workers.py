"""`webui-backend serve` with WEB_CONCURRENCY=2 and the real local Redis: both workers serve
turns over WebSocket and SSE, a stop reaches the worker generating the turn, and a worker
killed mid-reply is replaced while its reply ends `interrupted` for whoever watches it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from tests.integration.backend.conftest import rows
from tests.integration.backend.streams_support import (
    REDIS_URL,
    ReplyAssembly,
    echo_words,
    fresh_redis_prefix,
    recv_event,
    ws_session,
)
from tests.integration.backend.turn_client import sse_events
from tests.support.accounts import Account, signed_in
from tests.support.backend_process import BackendProcess
from tests.support.runner_process import RunnerProcess, running_runner
from tests.support.workers import (
    HUB_WORKER,
    STARTUP_COMPLETE,
    WORKER_DIED,
    hub_worker_pids,
    serving_workers,
    wait_for_lines,
)

_SLOW = "/tps 20 /long 400"  # 20 s of reply: long enough to stop or kill in the middle


@pytest.fixture
def runner() -> Iterator[RunnerProcess]:
    with running_runner("--backend", "fake", "--max-running", "8") as process:
        yield process


@pytest.fixture
async def redis() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    async with fresh_redis_prefix("workers") as found:
        yield found


@pytest.fixture
def backend(
    runner: RunnerProcess, redis: tuple[aioredis.Redis, str], tmp_path: Path
) -> Iterator[BackendProcess]:
    """One `serve` with two workers; returns once both finished their start-up."""
    env = {
        "WEB_CONCURRENCY": "2",
        "WEBUI_REDIS_URL": REDIS_URL,
        "WEBUI_REDIS_PREFIX": redis[1],
        "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0",
        "WEBUI_CHECKPOINT_INTERVAL_S": "0.2",
        # A dead worker's replies are swept within about 1.5 + 1 + 0.5 s.
        "WEBUI_WORKER_HEARTBEAT_S": "0.5",
        "WEBUI_ORPHAN_GRACE_S": "1",
        "WEBUI_ORPHAN_SWEEP_INTERVAL_S": "0.5",
    }
    with serving_workers(runner.address, tmp_path / "data", env) as process:
        yield process


async def turn_worker(redis: tuple[aioredis.Redis, str], turn_id: str) -> str:
    client, prefix = redis
    worker = await client.hget(f"{prefix}turn:{turn_id}:meta", "worker")  # type: ignore[misc]
    assert isinstance(worker, bytes), f"turn {turn_id} is not in the hub"
    return worker.decode()


async def run_turn(ws: ClientConnection, prompt: str) -> tuple[str, ReplyAssembly]:
    """Send a turn on the socket and read it to the end."""
    await ws.send(json.dumps({"type": "chat.send", "content": prompt}))
    turn_id = (await recv_event(ws))["turn_id"]
    reply = ReplyAssembly()
    await reply.read_until_finished(ws)
    return turn_id, reply


async def socket_on_worker(
    stack: AsyncExitStack,
    backend: BackendProcess,
    account: Account,
    redis: tuple[aioredis.Redis, str],
    wanted: set[str] | None = None,
    timeout_s: float = 60,
) -> tuple[str, ClientConnection]:
    """A new socket served by one of `wanted` workers (any worker when None). Which worker
    accepted a connection shows in the hub: the worker of a turn started on it."""
    async with asyncio.timeout(timeout_s):
        while True:
            ws = await stack.enter_async_context(ws_session(backend, account))
            turn_id, reply = await run_turn(ws, echo_words(2))
            assert reply.finished is not None
            assert reply.finished["status"] == "complete"
            worker = await turn_worker(redis, turn_id)
            if wanted is None or worker in wanted:
                return worker, ws
            await ws.close()


async def read_until(ws: ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            event = await recv_event(ws)
            if event["type"] == kind:
                return event


async def test_two_workers_serve_ws_and_sse_and_a_stop_reaches_the_generating_worker(
    backend: BackendProcess, redis: tuple[aioredis.Redis, str]
) -> None:
    account = await signed_in(backend)
    workers = set(hub_worker_pids(backend.service))
    assert len(workers) == 2
    async with AsyncExitStack() as stack:
        first, ws1 = await socket_on_worker(stack, backend, account, redis)
        second, ws2 = await socket_on_worker(stack, backend, account, redis, workers - {first})
        sockets = {first: ws1, second: ws2}

        # WebSocket: started on the first worker, stopped by a frame to the second.
        await ws1.send(json.dumps({"type": "chat.send", "content": _SLOW}))
        turn_id = (await recv_event(ws1))["turn_id"]
        reply = ReplyAssembly()
        while reply.last_seq < 3:
            reply.add(await recv_event(ws1))
        assert await turn_worker(redis, turn_id) == first
        await ws2.send(json.dumps({"type": "turn.stop", "turn_id": turn_id}))
        assert (await read_until(ws2, "turn.stop"))["stopped"] is True
        await reply.read_until_finished(ws1)
        assert reply.finished is not None
        assert (reply.finished["status"], reply.finished["finish_reason"]) == (
            "cancelled",
            "aborted",
        )
        stored = rows(backend, "SELECT content, status FROM message WHERE id = ?", turn_id)[0]
        assert (stored["content"], stored["status"]) == (reply.text, "cancelled")

        async with httpx.AsyncClient(
            base_url=backend.base_url, headers=account.headers, timeout=30
        ) as http:
            # SSE: a whole turn, then one stopped through the socket on the other worker.
            async with http.stream("POST", "/api/turns", json={"content": echo_words(5)}) as sse:
                events = [event async for _, event in sse_events(sse)]
            assert events[-1]["type"] == "turn.finished"
            assert events[-1]["status"] == "complete"

            async with http.stream("POST", "/api/turns", json={"content": _SLOW}) as sse:
                seen: list[dict[str, Any]] = []
                async for _, event in sse_events(sse):
                    seen.append(event)
                    if event.get("seq") == 3:
                        sse_turn = seen[0]["turn_id"]
                        generating = await turn_worker(redis, sse_turn)
                        other = sockets[(workers - {generating}).pop()]
                        await other.send(json.dumps({"type": "turn.stop", "turn_id": sse_turn}))
                        assert (await read_until(other, "turn.stop"))["stopped"] is True
            assert seen[-1]["type"] == "turn.finished"
            assert seen[-1]["status"] == "cancelled"


async def test_a_killed_worker_is_replaced_and_its_reply_ends_interrupted_for_watchers(
    backend: BackendProcess, redis: tuple[aioredis.Redis, str]
) -> None:
    account = await signed_in(backend)
    pids = hub_worker_pids(backend.service)
    async with AsyncExitStack() as stack:
        doomed, ws1 = await socket_on_worker(stack, backend, account, redis)
        _, ws2 = await socket_on_worker(stack, backend, account, redis, set(pids) - {doomed})

        await ws1.send(json.dumps({"type": "chat.send", "content": _SLOW}))
        turn_id = (await recv_event(ws1))["turn_id"]
        assert await turn_worker(redis, turn_id) == doomed
        # Watched from the other worker, through the hub.
        await ws2.send(json.dumps({"type": "turn.subscribe", "turn_id": turn_id, "after_seq": 0}))
        watched = ReplyAssembly()
        while watched.last_seq < 6:
            watched.add(await recv_event(ws2))
        async with asyncio.timeout(30):  # a checkpoint has stored part of the text
            while True:
                row = rows(backend, "SELECT content_seq FROM message WHERE id = ?", turn_id)[0]
                if row["content_seq"] > 0:
                    break
                await asyncio.sleep(0.05)
        text_before_kill = watched.text

        os.kill(pids[doomed], signal.SIGKILL)

        await watched.read_until_finished(ws2, timeout_s=60)
        assert watched.finished is not None
        assert (watched.finished["status"], watched.finished["finish_reason"]) == (
            "interrupted",
            "interrupted",
        )
        stored = rows(
            backend,
            "SELECT content, status, finish_reason FROM message WHERE id = ?",
            turn_id,
        )[0]
        assert (stored["status"], stored["finish_reason"]) == ("interrupted", "interrupted")
        # The partial text is kept, and is exactly what the watcher was shown.
        assert stored["content"] == watched.text
        assert text_before_kill
        assert watched.text.startswith(text_before_kill)

        # The supervisor noticed and started a replacement, which serves.
        died = await asyncio.to_thread(wait_for_lines, backend.service, WORKER_DIED, 1)
        assert int(died[0].group(1)) == pids[doomed]
        await asyncio.to_thread(wait_for_lines, backend.service, STARTUP_COMPLETE, 3)
        await asyncio.to_thread(wait_for_lines, backend.service, HUB_WORKER, 3)
        replacement = set(hub_worker_pids(backend.service)) - set(pids)
        assert len(replacement) == 1
        await socket_on_worker(stack, backend, account, redis, replacement)

        # The surviving worker kept serving throughout, on the same socket.
        _, after = await run_turn(ws2, echo_words(4))
        assert after.finished is not None
        assert after.finished["status"] == "complete"
