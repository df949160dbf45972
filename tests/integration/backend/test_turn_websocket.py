"""A turn over a real WebSocket, through a real runner process, into a real SQLite file."""

from __future__ import annotations

import json

from websockets.asyncio.client import connect

from tests.integration.backend.conftest import rows
from tests.integration.backend.turn_client import reply_text, ws_events_until_finished
from tests.support.backend_process import BackendProcess


async def test_turn_streams_in_order_and_is_stored(backend: BackendProcess) -> None:
    async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
        await ws.send(json.dumps({"type": "chat.send", "ref": "r1", "content": "Hello there"}))
        events = await ws_events_until_finished(ws)

    types = [e["type"] for e in events]
    assert types[0] == "turn.accepted"
    assert types[1] == "turn.started"
    assert types[-1] == "turn.finished"
    assert set(types[2:-1]) == {"turn.delta"}
    accepted, finished = events[0], events[-1]
    assert accepted["ref"] == "r1"
    assert accepted["created_chat"] is True
    # A lagging socket gets runs of deltas merged into one frame carrying the last part's
    # seq, so delivered seqs may jump; they never repeat or go back, and finished is last+1.
    seqs = [e["seq"] for e in events[1:]]
    assert seqs[0] == 1
    assert seqs == sorted(set(seqs))
    assert seqs[-1] == seqs[-2] + 1
    assert finished["status"] == "complete"
    assert finished["finish_reason"] in ("length", "eos")
    assert finished["usage"]["completion_tokens"] == 24
    text = reply_text(events)
    assert len(text.split()) == 24

    stored = rows(
        backend,
        "SELECT id, parent_id, role, content, status, finish_reason, prompt_tokens, "
        "completion_tokens, ttft_ms FROM message WHERE chat_id = ? ORDER BY created_at, role DESC",
        accepted["chat_id"],
    )
    by_id = {r["id"]: r for r in stored}
    user = by_id[accepted["user_message_id"]]
    reply = by_id[accepted["assistant_message_id"]]
    assert (user["role"], user["content"], user["parent_id"]) == ("user", "Hello there", None)
    assert reply["parent_id"] == user["id"]
    assert (reply["role"], reply["content"], reply["status"]) == ("assistant", text, "complete")
    assert reply["completion_tokens"] == 24
    assert reply["prompt_tokens"] > 0
    assert reply["ttft_ms"] is not None
    chat = rows(backend, "SELECT current_message_id FROM chat WHERE id = ?", accepted["chat_id"])
    assert chat[0]["current_message_id"] == reply["id"]


async def test_follow_up_turn_continues_the_branch(backend: BackendProcess) -> None:
    async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
        await ws.send(json.dumps({"type": "chat.send", "content": "first"}))
        first = await ws_events_until_finished(ws)
        chat_id = first[0]["chat_id"]
        await ws.send(json.dumps({"type": "chat.send", "chat_id": chat_id, "content": "second"}))
        second = await ws_events_until_finished(ws)
    assert second[0]["chat_id"] == chat_id
    assert second[-1]["status"] == "complete"
    user = rows(backend, "SELECT parent_id FROM message WHERE id = ?", second[0]["user_message_id"])
    assert user[0]["parent_id"] == first[0]["assistant_message_id"]


async def test_bad_frames_get_errors_and_the_socket_stays_usable(backend: BackendProcess) -> None:
    async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
        await ws.send(json.dumps({"type": "chat.send", "content": "seed"}))
        seeded = await ws_events_until_finished(ws)
        before = rows(backend, "SELECT count(*) AS n FROM message")[0]["n"]

        bad_frames = [
            ("{not json", "invalid_frame"),
            (json.dumps({"type": "chat.explode"}), "invalid_frame"),
            (json.dumps({"type": "chat.send"}), "invalid_frame"),
            (json.dumps({"type": "chat.send", "content": "x", "surprise": 1}), "invalid_frame"),
            (json.dumps({"type": "chat.send", "content": "   "}), "empty_message"),
            (json.dumps({"type": "chat.send", "content": "x" * 100_001}), "message_too_long"),
            (
                json.dumps({"type": "chat.send", "chat_id": "nope", "content": "x"}),
                "chat_not_found",
            ),
            (
                json.dumps(
                    {
                        "type": "chat.send",
                        "chat_id": seeded[0]["chat_id"],
                        "parent_id": "nope",
                        "content": "x",
                    }
                ),
                "parent_not_found",
            ),
            (
                json.dumps({"type": "chat.send", "model": "gpt-404", "content": "x"}),
                "model_not_found",
            ),
            (
                json.dumps({"type": "chat.send", "content": "x", "params": {"temperature": 9}}),
                "invalid_frame",
            ),
            (json.dumps({"type": "turn.subscribe", "turn_id": "nope"}), "not_found"),
        ]
        for frame, code in bad_frames:
            await ws.send(frame)
            event = json.loads(await ws.recv())
            assert event["type"] == "error", frame
            assert event["error"]["code"] == code, (frame, event)
            assert event["error"]["message"]
        await ws.send(b"\x00binary")
        assert json.loads(await ws.recv())["error"]["code"] == "invalid_frame"

        after = rows(backend, "SELECT count(*) AS n FROM message")[0]["n"]
        assert after == before

        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        assert json.loads(await ws.recv()) == {"type": "pong", "ref": "p"}
        await ws.send(json.dumps({"type": "chat.send", "content": "still here?"}))
        assert (await ws_events_until_finished(ws))[-1]["status"] == "complete"


async def test_second_socket_can_watch_a_live_turn(backend: BackendProcess) -> None:
    async with (
        connect(backend.ws_url, additional_headers=backend.auth_headers) as first,
        connect(backend.ws_url, additional_headers=backend.auth_headers) as second,
    ):
        await first.send(json.dumps({"type": "chat.send", "content": "watch me"}))
        accepted = json.loads(await first.recv())
        await second.send(json.dumps({"type": "turn.subscribe", "turn_id": accepted["turn_id"]}))
        watched = await ws_events_until_finished(second)
        own = await ws_events_until_finished(first)
    assert reply_text(watched) == reply_text(own)
    assert watched[-1]["status"] == own[-1]["status"] == "complete"
