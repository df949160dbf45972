"""Issue 7's topology in one test: two backend processes sharing one database and the real
local Redis, in front of two real runner processes. A turn started through one backend is
resumed and stopped through the other; a runner killed in the middle of a reply leaves that
reply `interrupted` and new turns, through either backend, served by the other runner.

`make test` runs it on SQLite, `make test-postgres` on PostgreSQL (tests/support/databases.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from model_runner.client import GrpcRunnerClient
from tests.integration.backend.streams_support import (
    REDIS_URL,
    ReplyAssembly,
    drop,
    fresh_redis_prefix,
    recv_event,
    runner_running,
    wait_for_running,
    ws_session,
)
from tests.integration.backend.turn_client import ws_events_until_finished
from tests.support.accounts import Account, signed_in
from tests.support.backend_process import BackendProcess, running_backend
from tests.support.runner_process import RunnerProcess, running_runner

# The fake backend reads these from the prompt: 20 tokens/s for 400 tokens, 20 s of reply.
_SLOW = "/tps 20 /long 400"


@pytest.fixture
def runners() -> Iterator[tuple[RunnerProcess, RunnerProcess]]:
    with (
        running_runner("--backend", "fake", "--max-running", "4") as first,
        running_runner("--backend", "fake", "--max-running", "4") as second,
    ):
        yield first, second


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    async with fresh_redis_prefix("scale-out") as (_, prefix):
        yield prefix


@pytest.fixture
def backends(
    runners: tuple[RunnerProcess, RunnerProcess], redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[BackendProcess, BackendProcess]]:
    data_dir = tmp_path / "shared"
    addresses = ",".join(runner.address for runner in runners)
    env = {
        "WEBUI_REDIS_URL": REDIS_URL,
        "WEBUI_REDIS_PREFIX": redis_prefix,
        "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0",
        "WEBUI_TITLE_GENERATION": "false",
        "WEBUI_RUNNER_HEALTH_INTERVAL_S": "0.2",
    }
    with (
        running_backend(runner_address=addresses, data_dir=data_dir, env=env) as first,
        running_backend(runner_address=addresses, data_dir=data_dir, env=env) as second,
    ):
        assert first.database_url == second.database_url
        yield first, second


async def _serving(runners: tuple[RunnerProcess, RunnerProcess]) -> RunnerProcess:
    """The runner generating the one live reply."""
    for runner in runners:
        if await runner_running(runner.address) == 1:
            return runner
    raise AssertionError("no runner reports the live reply")


async def _start_slow_turn(backend: BackendProcess, account: Account) -> tuple[str, ReplyAssembly]:
    """A long reply started through `backend`; returns its id and what the client saw of it
    (some deltas) before its connection dropped."""
    seen = ReplyAssembly()
    async with ws_session(backend, account) as ws:
        await ws.send(json.dumps({"type": "chat.send", "content": _SLOW}))
        turn_id = (await recv_event(ws))["turn_id"]
        while seen.last_seq < 4:
            seen.add(await recv_event(ws))
        drop(ws)
    return turn_id, seen


async def test_turns_move_between_backends_and_survive_a_runner(
    runners: tuple[RunnerProcess, RunnerProcess],
    backends: tuple[BackendProcess, BackendProcess],
) -> None:
    first, second = backends
    on_first, on_second = await signed_in(first), await signed_in(second)

    # Started through the first backend, resumed and stopped through the second.
    turn_id, seen = await _start_slow_turn(first, on_first)
    runner = await _serving(runners)
    load = GrpcRunnerClient(runner.address)
    try:
        async with ws_session(second, on_second) as ws:
            resumed_at = seen.last_seq
            await ws.send(
                json.dumps({"type": "turn.subscribe", "turn_id": turn_id, "after_seq": resumed_at})
            )
            while seen.last_seq < resumed_at + 3:
                seen.add(await recv_event(ws))
            async with httpx.AsyncClient(base_url=second.base_url, headers=on_second.headers) as h:
                stop = await h.post(f"/api/turns/{turn_id}/stop")
            assert stop.json() == {"turn_id": turn_id, "stopped": True}
            await wait_for_running(load, 0)
            await seen.read_until_finished(ws)
    finally:
        await load.close()
    assert seen.finished is not None
    assert seen.finished["status"] == "cancelled"

    # A runner dies in the middle of a reply: that reply is kept as `interrupted`...
    turn_id, seen = await _start_slow_turn(second, on_second)
    dying = await _serving(runners)
    dying.kill()
    async with ws_session(first, on_first) as ws:
        subscribe = {"type": "turn.subscribe", "turn_id": turn_id, "after_seq": seen.last_seq}
        await ws.send(json.dumps(subscribe))
        await seen.read_until_finished(ws)
    assert seen.finished is not None
    assert seen.finished["status"] == "interrupted"
    assert seen.text

    # ...and new turns through either backend go to the runner that is left.
    for backend, account in ((first, on_first), (second, on_second)):
        async with ws_session(backend, account) as ws:
            for n in range(2):
                await ws.send(json.dumps({"type": "chat.send", "content": f"/echo turn {n}"}))
                events = await ws_events_until_finished(ws)
                assert events[-1]["status"] == "complete", events[-1]
