"""Accounts against a real backend process, a real runner and a real migrated SQLite file:
socket authentication and close codes, cookie sessions on the socket, ownership over the
socket, the model-written title and usage accounting."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.backend.conftest import rows
from tests.integration.backend.turn_client import ws_events_until_finished
from tests.support.backend_process import BackendProcess
from tests.support.databases import is_postgresql


async def _close_code(backend: BackendProcess, headers: dict[str, str]) -> tuple[int, str]:
    async with connect(backend.ws_url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def _register(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/register", json={"email": email, "password": "another-pass-1", "name": "N"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_socket_refuses_strangers_with_4401_and_pending_accounts_with_4403(
    backend: BackendProcess,
) -> None:
    code, reason = await _close_code(backend, {})
    assert code == 4401
    assert "unauthorized" in reason
    assert (await _close_code(backend, {"Authorization": "Bearer nonsense"}))[0] == 4401
    async with httpx.AsyncClient(base_url=backend.base_url, timeout=30) as client:
        pending = await _register(client, "waiting@example.com")
    code, reason = await _close_code(
        backend, {"Authorization": f"Bearer {pending['access_token']}"}
    )
    assert (code, reason.split(":")[0]) == (4403, "account_pending")


async def test_browser_cookie_authorizes_the_socket_from_the_same_origin_only(
    backend: BackendProcess,
) -> None:
    async with httpx.AsyncClient(base_url=backend.base_url, timeout=30) as client:
        login = await client.post(
            "/api/auth/login",
            json={"email": "tester@example.com", "password": "integration-pass-1"},
        )
        assert login.status_code == 200
        cookie = f"webui_session={client.cookies['webui_session']}"
    host = backend.base_url.split("://", 1)[1]
    same = {"Cookie": cookie, "Origin": f"http://{host}"}
    async with connect(backend.ws_url, additional_headers=same) as ws:
        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
    foreign = {"Cookie": cookie, "Origin": "http://evil.example"}
    assert (await _close_code(backend, foreign))[0] == 4403


async def test_another_user_cannot_watch_or_continue_a_turn(backend: BackendProcess) -> None:
    async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
        await ws.send(json.dumps({"type": "chat.send", "ref": "a", "content": "private"}))
        events = await ws_events_until_finished(ws)
    turn_id = events[0]["turn_id"]
    async with httpx.AsyncClient(
        base_url=backend.base_url, headers=backend.auth_headers, timeout=30
    ) as admin:
        other = await _register(admin, "other@example.com")
        await admin.patch(f"/api/admin/users/{other['user']['id']}", json={"role": "user"})
    headers = {"Authorization": f"Bearer {other['access_token']}"}
    async with connect(backend.ws_url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "turn.subscribe", "turn_id": turn_id, "ref": "s"}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "not_found"


async def test_first_exchange_gets_a_model_title_and_usage_is_recorded(
    backend: BackendProcess,
) -> None:
    async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
        await ws.send(
            json.dumps({"type": "chat.send", "ref": "t", "content": "Plan a trip to Lisbon"})
        )
        events = await ws_events_until_finished(ws)
    chat_id = events[0]["chat_id"]
    deadline = time.monotonic() + 20
    title = "Plan a trip to Lisbon"
    async with httpx.AsyncClient(
        base_url=backend.base_url, headers=backend.auth_headers, timeout=30
    ) as client:
        while time.monotonic() < deadline:
            title = (await client.get(f"/api/chats/{chat_id}")).json()["title"]
            if title != "Plan a trip to Lisbon":
                break
            await asyncio.sleep(0.1)
        assert title != "Plan a trip to Lisbon"
        assert 0 < len(title) <= 80
        usage = (await client.get("/api/admin/usage")).json()["items"]
    assert sum(r["completion_tokens"] for r in usage) >= 24
    stored = rows(backend, "SELECT requests FROM usage_daily")
    assert stored
    assert stored[0]["requests"] >= 1
    indexed = rows(
        backend, _INDEXED_CHATS_PG if is_postgresql(backend.database_url) else _INDEXED_CHATS_SQLITE
    )
    assert chat_id in {r["chat_id"] for r in indexed}


# Chats whose title or messages the full-text index finds "lisbon" in (migrations 0002, 0004).
_INDEXED_CHATS_SQLITE = "SELECT chat_id FROM chat_search WHERE chat_search MATCH '{body} : lisbon'"
_INDEXED_CHATS_PG = (
    "SELECT chat_id FROM message WHERE to_tsvector('webui_search', "
    "regexp_replace(content, '[[:punct:][:space:]]+', ' ', 'g')) @@ 'lisbon'::tsquery "
    "UNION SELECT id FROM chat WHERE to_tsvector('webui_search', "
    "regexp_replace(title, '[[:punct:][:space:]]+', ' ', 'g')) @@ 'lisbon'::tsquery"
)
