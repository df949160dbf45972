"""Faults: an unreachable runner, a runner that dies mid-reply, a backend that crashes."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.backend.conftest import rows
from tests.integration.backend.turn_client import ws_events_until_finished
from tests.support.backend_process import BackendProcess, running_backend, start_backend
from tests.support.runner_process import running_runner


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def _wait_for_row(
    backend: BackendProcess, message_id: str, status: str, timeout_s: float = 20
) -> dict[str, object]:
    async with asyncio.timeout(timeout_s):
        while True:
            found = rows(backend, "SELECT * FROM message WHERE id = ?", message_id)
            if found and found[0]["status"] == status:
                return dict(found[0])
            await asyncio.sleep(0.05)


async def test_unreachable_runner_reports_and_keeps_the_message(tmp_path: Path) -> None:
    with running_backend(runner_address=_dead_address(), data_dir=tmp_path / "data") as backend:
        async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
            await ws.send(json.dumps({"type": "chat.send", "content": "is anyone there?"}))
            events = await ws_events_until_finished(ws)
        accepted, finished = events[0], events[-1]
        assert accepted["type"] == "turn.accepted"
        assert finished["status"] == "error"
        assert finished["error"]["code"] == "runner_unavailable"
        assert "unavailable" in finished["error"]["message"]
        user = rows(
            backend, "SELECT content FROM message WHERE id = ?", accepted["user_message_id"]
        )
        assert user[0]["content"] == "is anyone there?"
        reply = rows(
            backend,
            "SELECT status FROM message WHERE id = ?",
            accepted["assistant_message_id"],
        )
        assert reply[0]["status"] == "error"


async def test_runner_dying_mid_reply_keeps_partial_text_as_interrupted(tmp_path: Path) -> None:
    with (
        running_runner(
            "--backend", "fake", "--fake-tokens-per-second", "20", "--fake-reply-tokens", "400"
        ) as runner,
        running_backend(runner_address=runner.address, data_dir=tmp_path / "data") as backend,
    ):
        async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
            await ws.send(json.dumps({"type": "chat.send", "content": "talk for a while"}))
            accepted = json.loads(await ws.recv())
            deltas = 0
            while deltas < 3:
                if json.loads(await ws.recv())["type"] == "turn.delta":
                    deltas += 1
            runner.kill()
            rest = await ws_events_until_finished(ws)
        finished = rest[-1]
        assert finished["status"] == "interrupted"
        assert finished["error"]["code"] == "runner_unavailable"
        reply = rows(
            backend,
            "SELECT content, status FROM message WHERE id = ?",
            accepted["assistant_message_id"],
        )[0]
        assert reply["status"] == "interrupted"
        assert len(reply["content"].split()) >= 3


async def test_backend_crash_mid_reply_is_interrupted_after_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_runner(
        "--backend", "fake", "--fake-tokens-per-second", "20", "--fake-reply-tokens", "400"
    ) as runner:
        backend = start_backend(runner_address=runner.address, data_dir=data_dir)
        try:
            async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
                await ws.send(json.dumps({"type": "chat.send", "content": "crash during this"}))
                accepted = json.loads(await ws.recv())
                while json.loads(await ws.recv())["type"] != "turn.delta":
                    pass
                backend.kill()
        except ConnectionClosed:
            pass
        finally:
            backend.kill()
        streaming = rows(
            backend,
            "SELECT status FROM message WHERE id = ?",
            accepted["assistant_message_id"],
        )
        assert streaming[0]["status"] == "streaming"

        with running_backend(runner_address=runner.address, data_dir=data_dir) as restarted:
            row = await _wait_for_row(restarted, accepted["assistant_message_id"], "interrupted")
            assert row["finish_reason"] == "interrupted"
            user = rows(
                restarted,
                "SELECT content FROM message WHERE id = ?",
                accepted["user_message_id"],
            )
            assert user[0]["content"] == "crash during this"


async def test_oversized_frame_closes_with_1009_and_stores_nothing(backend: BackendProcess) -> None:
    async with connect(
        backend.ws_url, max_size=None, additional_headers=backend.auth_headers
    ) as ws:
        await ws.send(json.dumps({"type": "chat.send", "content": "x" * 2_000_000}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    assert rows(backend, "SELECT count(*) AS n FROM message")[0]["n"] == 0
