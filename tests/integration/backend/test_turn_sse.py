"""The same turn over Server-Sent Events, and REST errors with JSON bodies."""

from __future__ import annotations

import httpx

from tests.integration.backend.conftest import rows
from tests.integration.backend.turn_client import reply_text, sse_events
from tests.support.backend_process import BackendProcess


async def test_sse_turn_streams_and_is_stored(backend: BackendProcess) -> None:
    async with httpx.AsyncClient(
        base_url=backend.base_url, headers=backend.auth_headers, timeout=30
    ) as client:
        async with client.stream(
            "POST", "/api/turns", json={"content": "Over SSE", "params": {"max_tokens": 10}}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            received = [pair async for pair in sse_events(response)]

        ids = [event_id for event_id, _ in received]
        events = [event for _, event in received]
        assert [e["type"] for e in events][:2] == ["turn.accepted", "turn.started"]
        assert events[-1]["type"] == "turn.finished"
        assert ids[0] is None
        assert [int(i) for i in ids[1:] if i is not None] == [e["seq"] for e in events[1:]]
        assert events[-1]["finish_reason"] == "length"
        assert events[-1]["usage"]["completion_tokens"] == 10

        reply = rows(
            backend,
            "SELECT content, status FROM message WHERE id = ?",
            events[0]["assistant_message_id"],
        )[0]
        assert (reply["content"], reply["status"]) == (reply_text(events), "complete")

        chat = await client.get(f"/api/chats/{events[0]['chat_id']}")
        assert chat.status_code == 200
        body = chat.json()
        assert body["active_branch"] == [
            events[0]["user_message_id"],
            events[0]["assistant_message_id"],
        ]
        assert [m["role"] for m in body["messages"]] == ["user", "assistant"]


async def test_rest_errors_are_json_and_store_nothing(backend: BackendProcess) -> None:
    async with httpx.AsyncClient(
        base_url=backend.base_url, headers=backend.auth_headers, timeout=30
    ) as client:
        cases = [
            ({"content": ""}, 400, "empty_message"),
            ({"content": "x", "chat_id": "nope"}, 404, "chat_not_found"),
            ({"content": "x", "model": "nope"}, 404, "model_not_found"),
            ({"content": "x", "params": {"top_p": 0}}, 422, "validation_error"),
            ({}, 422, "validation_error"),
        ]
        for body, status, code in cases:
            response = await client.post("/api/turns", json=body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"]["code"] == code
        huge = await client.post(
            "/api/turns",
            content=b'{"content": "' + b"x" * 3_000_000 + b'"}',
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        assert huge.json()["error"]["code"] == "payload_too_large"
        assert (await client.get("/api/chats/nope")).status_code == 404
        assert (await client.get("/api/chats")).json()["items"] == []
    assert rows(backend, "SELECT count(*) AS n FROM message")[0]["n"] == 0
