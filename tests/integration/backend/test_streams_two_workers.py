"""Two backend processes sharing one SQLite file and the real local Redis: a turn started
through one is resumed and stopped through the other."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from model_runner.client import GrpcRunnerClient
from tests.integration.backend.conftest import rows
from tests.integration.backend.streams_support import (
    REDIS_URL,
    ReplyAssembly,
    delete_prefix,
    drop,
    echo_words,
    recv_event,
    redis_or_skip,
    wait_for_running,
    ws_session,
)
from tests.support.accounts import signed_in
from tests.support.backend_process import BackendProcess, running_backend
from tests.support.runner_process import RunnerProcess, running_runner


@pytest.fixture
def runner() -> Iterator[RunnerProcess]:
    with running_runner("--backend", "fake", "--max-running", "4") as process:
        yield process


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    client = await redis_or_skip()
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


@pytest.fixture
def workers(
    runner: RunnerProcess, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[BackendProcess, BackendProcess]]:
    data_dir = tmp_path / "shared"
    env = {
        "WEBUI_REDIS_URL": REDIS_URL,
        "WEBUI_REDIS_PREFIX": redis_prefix,
        "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0",
    }
    with (
        running_backend(runner_address=runner.address, data_dir=data_dir, env=env) as first,
        running_backend(runner_address=runner.address, data_dir=data_dir, env=env) as second,
    ):
        assert first.db_path == second.db_path
        yield first, second


async def test_a_turn_started_on_one_worker_is_resumed_and_stopped_on_the_other(
    runner: RunnerProcess, workers: tuple[BackendProcess, BackendProcess]
) -> None:
    first, second = workers
    on_first, on_second = await signed_in(first), await signed_in(second)
    seen = ReplyAssembly()
    async with ws_session(first, on_first) as ws:
        await ws.send(json.dumps({"type": "chat.send", "content": "/tps 20 /long 400"}))
        accepted = await recv_event(ws)
        turn_id = accepted["turn_id"]
        while seen.last_seq < 4:
            seen.add(await recv_event(ws))
        drop(ws)
    text_before_drop = seen.text

    load = GrpcRunnerClient(runner.address)
    try:
        async with ws_session(second, on_second) as ws:
            subscribe = {"type": "turn.subscribe", "turn_id": turn_id, "after_seq": seen.last_seq}
            await ws.send(json.dumps(subscribe))
            resumed_at = seen.last_seq
            while seen.last_seq < resumed_at + 3:
                seen.add(await recv_event(ws))

            async with httpx.AsyncClient(
                base_url=second.base_url, headers=on_second.headers
            ) as http:
                answer = await http.post(f"/api/turns/{turn_id}/stop")
            assert answer.status_code == 200
            assert answer.json() == {"turn_id": turn_id, "stopped": True}
            await wait_for_running(load, 0)
            await seen.read_until_finished(ws)
    finally:
        await load.close()

    assert seen.finished is not None
    assert (seen.finished["status"], seen.finished["finish_reason"]) == ("cancelled", "aborted")
    stored = rows(first, "SELECT content, status FROM message WHERE id = ?", turn_id)[0]
    assert (stored["content"], stored["status"]) == (seen.text, "cancelled")
    # The second worker delivered text past the drop, continuing it without a gap.
    assert seen.text.startswith(text_before_drop)
    assert len(seen.text) > len(text_before_drop)


async def test_a_finished_turn_resumes_on_the_other_worker_without_gap(
    workers: tuple[BackendProcess, BackendProcess],
) -> None:
    first, second = workers
    on_first, on_second = await signed_in(first), await signed_in(second)
    seen = ReplyAssembly()
    async with ws_session(first, on_first) as ws:
        prompt = echo_words(40, tokens_per_second=40)
        await ws.send(json.dumps({"type": "chat.send", "content": prompt}))
        turn_id = (await recv_event(ws))["turn_id"]
        while seen.last_seq < 10 and seen.finished is None:
            seen.add(await recv_event(ws))
        drop(ws)
    # Wait for the end on the database, with a deadline.
    async with asyncio.timeout(30):
        while True:
            row = rows(first, "SELECT status FROM message WHERE id = ?", turn_id)[0]
            if row["status"] != "streaming":
                break
            await asyncio.sleep(0.05)
    async with ws_session(second, on_second) as ws:
        subscribe = {"type": "turn.subscribe", "turn_id": turn_id, "after_seq": seen.last_seq}
        await ws.send(json.dumps(subscribe))
        await seen.read_until_finished(ws)
    assert seen.text == " ".join(f"w{i}" for i in range(1, 41))
    assert seen.finished is not None
    assert seen.finished["status"] == "complete"
