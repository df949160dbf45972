"""Chats over REST: pages, pin/archive/tags, branch switching, search, export/import, shares."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from tests.unit.backend.api.conftest import Account
from webui_backend.container import AppServices
from webui_backend.services.new_turn import TurnRequest


async def _turn(services: AppServices, user: Account, content: str, **kwargs: Any) -> str:
    handle = await services.turns.start_turn(user.id, TurnRequest(content=content, **kwargs))
    async for _ in services.hub.subscribe(handle.turn_id, user.id):
        pass
    return handle.chat_id


async def test_list_pages_pinned_first_then_recent(
    client: httpx.AsyncClient, alice: Account
) -> None:
    ids = []
    for i in range(5):
        response = await client.post("/api/chats", json={"title": f"c{i}"}, headers=alice.headers)
        ids.append(response.json()["id"])
    await client.patch(f"/api/chats/{ids[1]}", json={"pinned": True}, headers=alice.headers)
    await client.patch(f"/api/chats/{ids[3]}", json={"archived": True}, headers=alice.headers)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/chats", params=params, headers=alice.headers)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [ids[1], ids[4], ids[2], ids[0]]
    archived = (
        await client.get("/api/chats", params={"archived": True}, headers=alice.headers)
    ).json()
    assert [c["id"] for c in archived["items"]] == [ids[3]]
    bad = await client.get("/api/chats", params={"cursor": "garbage"}, headers=alice.headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_cursor"


async def test_tags_filter_and_normalise(client: httpx.AsyncClient, alice: Account) -> None:
    a = (
        await client.post(
            "/api/chats", json={"title": "a", "tags": ["Work", "work "]}, headers=alice.headers
        )
    ).json()
    await client.post("/api/chats", json={"title": "b"}, headers=alice.headers)
    assert a["tags"] == ["work"]
    tagged = (await client.get("/api/chats", params={"tag": "work"}, headers=alice.headers)).json()[
        "items"
    ]
    assert [c["id"] for c in tagged] == [a["id"]]
    tags = (await client.get("/api/chats/tags", headers=alice.headers)).json()["items"]
    assert tags == [{"name": "work", "chats": 1}]


async def test_switching_the_active_branch_follows_the_newest_leaf(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    services: AppServices = app.state.services
    chat_id = await _turn(services, alice, "first question")
    detail = (await client.get(f"/api/chats/{chat_id}", headers=alice.headers)).json()
    first_user, first_reply = detail["active_branch"]
    # Edit the first message: a sibling root branch.
    await _turn(
        services, alice, "edited question", chat_id=chat_id, parent_id=None, use_active_leaf=False
    )
    detail = (await client.get(f"/api/chats/{chat_id}", headers=alice.headers)).json()
    assert detail["active_branch"][0] != first_user

    switched = await client.patch(
        f"/api/chats/{chat_id}", json={"current_message_id": first_user}, headers=alice.headers
    )
    assert switched.json()["current_message_id"] == first_reply
    detail = (await client.get(f"/api/chats/{chat_id}", headers=alice.headers)).json()
    assert detail["active_branch"] == [first_user, first_reply]
    missing = await client.patch(
        f"/api/chats/{chat_id}", json={"current_message_id": "nope"}, headers=alice.headers
    )
    assert missing.status_code == 404


async def test_search_finds_titles_and_messages_and_follows_edits(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    services: AppServices = app.state.services
    chat_id = await _turn(services, alice, "How do I prune an apricot tree?")
    await _turn(services, bob, "apricot jam recipe")
    hits = (
        await client.get("/api/chats/search", params={"q": "apricot"}, headers=alice.headers)
    ).json()["items"]
    assert {h["chat_id"] for h in hits} == {chat_id}
    assert any("[apricot]" in h["snippet"].lower() for h in hits)
    prefix = (
        await client.get("/api/chats/search", params={"q": "pru*"}, headers=alice.headers)
    ).json()["items"]
    assert {h["chat_id"] for h in prefix} == {chat_id}

    await client.patch(
        f"/api/chats/{chat_id}", json={"title": "Orchard care"}, headers=alice.headers
    )
    titled = (
        await client.get("/api/chats/search", params={"q": "orchard"}, headers=alice.headers)
    ).json()["items"]
    assert [h["message_id"] for h in titled] == [None]
    await client.delete(f"/api/chats/{chat_id}", headers=alice.headers)
    gone = (
        await client.get("/api/chats/search", params={"q": "apricot"}, headers=alice.headers)
    ).json()["items"]
    assert gone == []
    operators = await client.get(
        "/api/chats/search", params={"q": '" OR NEAR('}, headers=alice.headers
    )
    assert operators.status_code in (200, 400)


async def test_export_and_import_round_trip(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    services: AppServices = app.state.services
    chat_id = await _turn(services, alice, "Export me")
    exported = await client.get(f"/api/chats/{chat_id}/export", headers=alice.headers)
    assert exported.status_code == 200
    document = exported.json()
    markdown = await client.get(
        f"/api/chats/{chat_id}/export", params={"format": "markdown"}, headers=alice.headers
    )
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "## User\n\nExport me" in markdown.text

    imported = await client.post("/api/chats/import", json=document, headers=alice.headers)
    assert imported.status_code == 201, imported.text
    new_id = imported.json()["items"][0]["id"]
    assert new_id != chat_id
    copy = (await client.get(f"/api/chats/{new_id}", headers=alice.headers)).json()
    original = (await client.get(f"/api/chats/{chat_id}", headers=alice.headers)).json()
    assert [m["content"] for m in copy["messages"]] == [m["content"] for m in original["messages"]]
    assert len(copy["active_branch"]) == 2


async def test_import_open_webui_export(client: httpx.AsyncClient, alice: Account) -> None:
    document = [
        {
            "id": "x",
            "title": "From Open WebUI",
            "created_at": 1700000000,
            "chat": {
                "title": "From Open WebUI",
                "history": {
                    "currentId": "m3",
                    "messages": {
                        "m1": {
                            "id": "m1",
                            "parentId": None,
                            "role": "user",
                            "content": "hi",
                            "timestamp": 1700000000,
                        },
                        "m2": {
                            "id": "m2",
                            "parentId": "m1",
                            "role": "assistant",
                            "content": "hello",
                            "model": "llama3",
                            "timestamp": 1700000001,
                        },
                        "m4": {
                            "id": "m4",
                            "parentId": "m1",
                            "role": "assistant",
                            "content": "hey",
                            "timestamp": 1700000002,
                        },
                        "m3": {
                            "id": "m3",
                            "parentId": "m2",
                            "role": "user",
                            "content": "again",
                            "timestamp": 1700000003,
                        },
                    },
                },
            },
        }
    ]
    response = await client.post("/api/chats/import", json=document, headers=alice.headers)
    assert response.status_code == 201, response.text
    chat = response.json()["items"][0]
    detail = (await client.get(f"/api/chats/{chat['id']}", headers=alice.headers)).json()
    by_id = {m["id"]: m for m in detail["messages"]}
    assert [by_id[i]["content"] for i in detail["active_branch"]] == ["hi", "hello", "again"]
    assert len(detail["messages"]) == 4

    cyclic = {
        "chat": {
            "history": {
                "messages": {
                    "a": {"id": "a", "parentId": "b", "role": "user", "content": "x"},
                    "b": {"id": "b", "parentId": "a", "role": "user", "content": "y"},
                }
            }
        }
    }
    refused = await client.post("/api/chats/import", json=cyclic, headers=alice.headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_import"
    junk = await client.post("/api/chats/import", json={"hello": 1}, headers=alice.headers)
    assert junk.status_code == 400


async def test_share_is_a_revocable_public_snapshot(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    services: AppServices = app.state.services
    chat_id = await _turn(services, alice, "Share this")
    created = await client.post(f"/api/chats/{chat_id}/shares", headers=alice.headers)
    assert created.status_code == 201
    share = created.json()
    assert len(share["id"]) >= 32
    assert share["url"].endswith(f"/s/{share['id']}")
    await _turn(services, alice, "Not in the snapshot", chat_id=chat_id)

    public = await client.get(f"/api/shares/{share['id']}")
    assert public.status_code == 200
    assert next(m["content"] for m in public.json()["messages"]) == "Share this"
    assert len(public.json()["messages"]) == 2
    listed = (await client.get(f"/api/chats/{chat_id}/shares", headers=alice.headers)).json()
    assert [s["id"] for s in listed["items"]] == [share["id"]]

    assert (
        await client.delete(f"/api/shares/{share['id']}", headers=alice.headers)
    ).status_code == 204
    assert (await client.get(f"/api/shares/{share['id']}")).status_code == 404


async def test_chat_messages_are_rate_limited(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    await client.patch(
        "/api/admin/settings", json={"chat_messages_per_minute": 2}, headers=admin.headers
    )
    services: AppServices = app.state.services
    await _turn(services, alice, "one")
    await _turn(services, alice, "two")
    response = await client.post("/api/turns", json={"content": "three"}, headers=alice.headers)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    await asyncio.sleep(0)
