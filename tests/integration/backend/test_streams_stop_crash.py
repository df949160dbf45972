"""Stop frees the runner's slot; a backend killed mid-reply keeps the checkpointed text, marks
it interrupted on restart, and the reply can be continued."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from model_runner.client import GrpcRunnerClient
from tests.integration.backend.conftest import rows
from tests.integration.backend.streams_support import (
    ReplyAssembly,
    recv_event,
    wait_for_running,
    ws_session,
)
from tests.support.accounts import signed_in
from tests.support.backend_process import BackendProcess, running_backend, start_backend
from tests.support.runner_process import RunnerProcess, running_runner

_SLOW = "/tps 20 /long 400"  # 20 s of reply: long enough to stop or crash in the middle


@pytest.fixture
def runner() -> Iterator[RunnerProcess]:
    with running_runner("--backend", "fake", "--max-running", "4") as process:
        yield process


@pytest.fixture
def backend(runner: RunnerProcess, tmp_path: Path) -> Iterator[BackendProcess]:
    env = {"WEBUI_CHAT_MESSAGES_PER_MINUTE": "0"}
    with running_backend(runner_address=runner.address, data_dir=tmp_path / "data", env=env) as b:
        yield b


async def test_stop_frees_the_runner_slot_and_keeps_the_partial_reply(
    runner: RunnerProcess, backend: BackendProcess
) -> None:
    account = await signed_in(backend)
    load = GrpcRunnerClient(runner.address)
    stop_to_free_ms: list[float] = []
    try:
        async with (
            ws_session(backend, account) as ws,
            httpx.AsyncClient(base_url=backend.base_url, headers=account.headers) as http,
        ):
            for attempt in range(6):
                await ws.send(json.dumps({"type": "chat.send", "content": _SLOW}))
                accepted = await recv_event(ws)
                turn_id = accepted["turn_id"]
                reply = ReplyAssembly()
                while reply.last_seq < 4:
                    reply.add(await recv_event(ws))
                await wait_for_running(load, 1)
                started = time.perf_counter()
                if attempt % 2 == 0:  # both ways: the WS frame and the REST route
                    await ws.send(json.dumps({"type": "turn.stop", "turn_id": turn_id}))
                else:
                    answer = await http.post(f"/api/turns/{turn_id}/stop")
                    assert answer.json() == {"turn_id": turn_id, "stopped": True}
                freed = await wait_for_running(load, 0)
                stop_to_free_ms.append((freed - started) * 1000)
                async with asyncio.timeout(30):
                    while reply.finished is None:
                        event = await recv_event(ws)
                        if event["type"] == "turn.stop":
                            assert event["stopped"] is True
                            continue
                        reply.add(event)
                assert reply.finished["status"] == "cancelled"
                assert reply.finished["finish_reason"] == "aborted"
                stored = rows(
                    backend,
                    "SELECT content, status FROM message WHERE id = ?",
                    turn_id,
                )[0]
                assert (stored["content"], stored["status"]) == (reply.text, "cancelled")
                assert reply.text
            # Stopping again: the reply already ended.
            again = await http.post(f"/api/turns/{turn_id}/stop")
            assert again.json() == {"turn_id": turn_id, "stopped": False}
    finally:
        await load.close()
    # Reported, not asserted (the machine is shared): docs/benchmarks.md keeps the figures.
    print(
        f"\nstop -> runner slot freed (GetLoad running == 0), {len(stop_to_free_ms)} stops: "
        f"median {statistics.median(stop_to_free_ms):.1f} ms, max {max(stop_to_free_ms):.1f} ms, "
        f"all {[round(ms, 1) for ms in stop_to_free_ms]}"
    )


async def test_backend_killed_mid_reply_keeps_the_checkpoint_and_can_continue(
    runner: RunnerProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = {"WEBUI_CHECKPOINT_INTERVAL_S": "0.5", "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0"}
    backend = start_backend(runner_address=runner.address, data_dir=data_dir, env=env)
    seen = ReplyAssembly()
    try:
        account = await signed_in(backend)
        async with ws_session(backend, account) as ws:
            await ws.send(json.dumps({"type": "chat.send", "content": _SLOW}))
            accepted = await recv_event(ws)
            turn_id = accepted["turn_id"]
            # Wait (on the database, with a deadline) for a checkpoint with some words in it.
            async with asyncio.timeout(30):
                while True:
                    seen.add(await recv_event(ws))
                    row = rows(
                        backend,
                        "SELECT content, content_seq FROM message WHERE id = ?",
                        turn_id,
                    )[0]
                    if len(row["content"].split()) >= 5:
                        break
            backend.kill()
    except ConnectionClosed:
        pass
    finally:
        backend.kill()

    crashed = rows(
        backend, "SELECT content, content_seq, status FROM message WHERE id = ?", turn_id
    )[0]
    assert crashed["status"] == "streaming"
    checkpoint = crashed["content"]
    # The checkpoint is a prefix of what the client saw, and covers `content_seq`.
    assert seen.text.startswith(checkpoint)
    assert crashed["content_seq"] >= 6

    with running_backend(runner_address=runner.address, data_dir=data_dir, env=env) as restarted:
        reply = rows(
            restarted,
            "SELECT content, status, finish_reason FROM message WHERE id = ?",
            turn_id,
        )[0]
        assert (reply["status"], reply["finish_reason"]) == ("interrupted", "interrupted")
        assert reply["content"] == checkpoint
        user = rows(
            restarted,
            "SELECT content FROM message WHERE id = ?",
            accepted["user_message_id"],
        )[0]
        assert user["content"] == _SLOW

        account = await signed_in(restarted)
        async with ws_session(restarted, account) as ws:
            # A client resuming the interrupted reply gets the stored text and the end.
            await ws.send(json.dumps({"type": "turn.subscribe", "turn_id": turn_id}))
            resumed = ReplyAssembly()
            await resumed.read_until_finished(ws)
            assert resumed.text == checkpoint
            assert resumed.finished is not None
            assert resumed.finished["status"] == "interrupted"

            frame = {"type": "turn.continue", "turn_id": turn_id, "params": {"max_tokens": 6}}
            await ws.send(json.dumps(frame))
            again = await recv_event(ws)
            assert again["type"] == "turn.accepted"
            assert again["turn_id"] == turn_id
            continued = ReplyAssembly(last_seq=resumed.last_seq)
            await continued.read_until_finished(ws)
        assert continued.finished is not None
        assert continued.finished["status"] == "complete"
        assert continued.seqs[0] == resumed.last_seq + 1
        final = rows(restarted, "SELECT content, status FROM message WHERE id = ?", turn_id)[0]
        assert final["status"] == "complete"
        assert final["content"] == checkpoint + continued.text
        assert len(continued.text.split()) == 6
