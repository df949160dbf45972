"""Resume and idempotent sends over real sockets: a dropped connection at a random point loses
and repeats nothing; the same turn key across a reconnect never generates twice."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.backend.conftest import rows
from tests.integration.backend.streams_support import (
    ReplyAssembly,
    drop,
    echo_words,
    recv_event,
    ws_session,
)
from tests.integration.backend.turn_client import sse_events
from tests.support.accounts import signed_in
from tests.support.backend_process import BackendProcess, running_backend
from tests.support.runner_process import RunnerProcess, running_runner

WORDS = 80


@pytest.fixture(scope="module")
def fast_runner() -> Iterator[RunnerProcess]:
    with running_runner("--backend", "fake", "--fake-tokens-per-second", "400") as process:
        yield process


# 4096: the hub still holds every event; 16: it keeps only the tail, so a resume must come
# from the stored checkpoint (turn.snapshot) plus the hub's tail.
@pytest.fixture(params=[4096, 16], ids=["hub-replay", "checkpoint-and-tail"])
def backend(
    request: pytest.FixtureRequest, fast_runner: RunnerProcess, tmp_path: Path
) -> Iterator[BackendProcess]:
    env = {
        "WEBUI_TURN_BUFFER_EVENTS": str(request.param),
        "WEBUI_CHECKPOINT_INTERVAL_S": "0.2",
        "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0",
    }
    with running_backend(
        runner_address=fast_runner.address, data_dir=tmp_path / "data", env=env
    ) as process:
        yield process


def _stored(backend: BackendProcess, message_id: str) -> tuple[str, str]:
    row = rows(backend, "SELECT content, status FROM message WHERE id = ?", message_id)[0]
    return row["content"], row["status"]


@pytest.mark.parametrize("reconnect", ["while-live", "after-finished"])
async def test_resume_after_a_dropped_socket_at_a_random_point(
    backend: BackendProcess, reconnect: str
) -> None:
    account = await signed_in(backend)
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    cut_after = random.Random(seed).randint(1, WORDS - 10)
    prompt = echo_words(WORDS, tokens_per_second=60)
    client = ReplyAssembly()
    async with ws_session(backend, account) as ws:
        await ws.send(json.dumps({"type": "chat.send", "content": prompt}))
        accepted = await recv_event(ws)
        assert accepted["type"] == "turn.accepted", accepted
        deltas = 0
        while deltas < cut_after:
            event = await recv_event(ws)
            client.add(event)
            deltas += event["type"] == "turn.delta"
        drop(ws)
    turn_id = accepted["turn_id"]

    if reconnect == "after-finished":
        async with ws_session(backend, account) as watcher:
            await watcher.send(json.dumps({"type": "turn.subscribe", "turn_id": turn_id}))
            await ReplyAssembly().read_until_finished(watcher)

    async with ws_session(backend, account) as ws:
        subscribe = {"type": "turn.subscribe", "turn_id": turn_id, "after_seq": client.last_seq}
        await ws.send(json.dumps(subscribe))
        await client.read_until_finished(ws)

    expected = " ".join(f"w{i}" for i in range(1, WORDS + 1))
    assert client.finished is not None
    assert client.finished["status"] == "complete", f"seed {seed}: {client.finished}"
    assert client.text == expected, f"seed {seed}: cut after {cut_after} deltas"
    assert _stored(backend, turn_id) == (expected, "complete")


async def test_resume_over_sse_with_last_event_id(backend: BackendProcess) -> None:
    account = await signed_in(backend)
    prompt = echo_words(WORDS, tokens_per_second=60)
    cut_after = random.randint(1, WORDS - 10)
    client = ReplyAssembly()
    async with httpx.AsyncClient(
        base_url=backend.base_url, headers=account.headers, timeout=30
    ) as http:
        async with http.stream("POST", "/api/turns", json={"content": prompt}) as response:
            assert response.status_code == 200
            deltas = 0
            turn_id = ""
            async for _id, event in sse_events(response):
                if event["type"] == "turn.accepted":
                    turn_id = event["turn_id"]
                    continue
                client.add(event)
                deltas += event["type"] == "turn.delta"
                if deltas >= cut_after:
                    break
        headers = {"Last-Event-ID": str(client.last_seq)}
        async with http.stream("GET", f"/api/turns/{turn_id}/events", headers=headers) as resumed:
            assert resumed.status_code == 200
            async for _id, event in sse_events(resumed):
                client.add(event)
    expected = " ".join(f"w{i}" for i in range(1, WORDS + 1))
    assert client.text == expected
    assert _stored(backend, turn_id) == (expected, "complete")


async def test_the_same_turn_key_across_a_reconnect_never_generates_twice(
    backend: BackendProcess,
) -> None:
    account = await signed_in(backend)
    prompt = echo_words(WORDS, tokens_per_second=60, tag="k")
    send = {"type": "chat.send", "content": prompt, "turn_key": "retry-me-1"}
    first = ReplyAssembly()
    async with ws_session(backend, account) as ws:
        await ws.send(json.dumps(send))
        accepted = await recv_event(ws)
        while first.last_seq < 5:
            first.add(await recv_event(ws))
        drop(ws)

    async with ws_session(backend, account) as ws:
        await ws.send(json.dumps({**send, "ref": "again", "after_seq": first.last_seq}))
        again = await recv_event(ws)
        assert again["type"] == "turn.accepted"
        assert again["existing"] is True
        assert again["ref"] == "again"
        for key in ("turn_id", "chat_id", "user_message_id", "assistant_message_id"):
            assert again[key] == accepted[key]
        await first.read_until_finished(ws)

        # Once more after it finished, and with a different message under the same key.
        await ws.send(json.dumps({**send, "after_seq": first.last_seq}))
        third = await recv_event(ws)
        assert (third["existing"], third["turn_id"]) == (True, accepted["turn_id"])
        await ws.send(json.dumps({**send, "content": "something else"}))
        conflict = await recv_event(ws)
        assert conflict["type"] == "error"
        assert conflict["error"]["code"] == "turn_key_conflict"

    # The same key over SSE answers with the same turn, too.
    async with httpx.AsyncClient(
        base_url=backend.base_url, headers=account.headers, timeout=30
    ) as http:
        body = {"content": prompt, "turn_key": "retry-me-1"}
        async with http.stream("POST", "/api/turns", json=body) as response:
            events = [event async for _id, event in sse_events(response)]
    assert events[0]["turn_id"] == accepted["turn_id"]
    assert events[-1]["type"] == "turn.finished"

    expected = " ".join(f"k{i}" for i in range(1, WORDS + 1))
    assert first.text == expected
    messages = rows(
        backend,
        "SELECT role, content FROM message WHERE chat_id = ? ORDER BY created_at",
        accepted["chat_id"],
    )
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", prompt),
        ("assistant", expected),
    ]
