"""Chat search semantics (docs/api.md), the same on SQLite (FTS5) and PostgreSQL (tsvector):
whole words, case- and accent-insensitive, opt-in prefixes, punctuation splits words, newest
first, only the owner's chats. Run on PostgreSQL with `make test-postgres`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.unit.backend.api.conftest import Account
from webui_backend.container import AppServices
from webui_backend.db.repositories.chat_search import (
    MESSAGE_MATCH_SQL,
    TITLE_MATCH_SQL,
    SearchTerm,
    tsquery,
)


def _export(title: str, *texts: str, day: int = 1) -> dict[str, Any]:
    """One chat in our export format: a user message per text, a day apart after `day`."""
    return {
        "format": "webui-stack.chat",
        "version": 1,
        "chat": {"title": title},
        "messages": [
            {
                "id": f"m{i}",
                "parent_id": f"m{i - 1}" if i else None,
                "role": "user",
                "content": body,
                "created_at": f"2026-01-{day + i:02d}T10:00:00+00:00",
            }
            for i, body in enumerate(texts)
        ],
    }


async def _import(client: httpx.AsyncClient, user: Account, *chats: dict[str, Any]) -> list[str]:
    response = await client.post("/api/chats/import", json=list(chats), headers=user.headers)
    assert response.status_code == 201, response.text
    return [c["id"] for c in response.json()["items"]]


async def _search(client: httpx.AsyncClient, user: Account, q: str) -> list[dict[str, Any]]:
    response = await client.get("/api/chats/search", params={"q": q}, headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_words_match_whole_case_and_accent_insensitively(
    client: httpx.AsyncClient, alice: Account
) -> None:
    [chat_id] = await _import(
        client, alice, _export("Notes", "Un CAFÉ crème at the Apricots stall, see example.com")
    )
    for query in ("cafe", "Café CRÈME", "creme", "example", "com", "apricots", "apri*"):
        hits = await _search(client, alice, query)
        assert [h["chat_id"] for h in hits] == [chat_id], query
    for query in ("apricot", "caf", "examplecom", "cafe missing"):
        assert await _search(client, alice, query) == [], query
    [hit] = await _search(client, alice, "stall")
    assert "[stall]" in hit["snippet"]
    assert hit["message_id"] is not None


async def test_hits_are_newest_first_and_only_the_owners(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    older, newer = await _import(
        client,
        alice,
        _export("Zebra facts", "zebra stripes", day=1),
        _export("Other", "a zebra crossing", day=10),
    )
    await _import(client, bob, _export("Bob's zebra", "zebra too"))
    hits = await _search(client, alice, "zebra")
    messages = [h["chat_id"] for h in hits if h["message_id"] is not None]
    assert messages == [newer, older]
    assert {h["chat_id"] for h in hits if h["message_id"] is None} == {older}
    assert [h["title"] for h in await _search(client, bob, "zebra")] == ["Bob's zebra"] * 2


async def test_postgresql_search_uses_the_expression_indexes(app: FastAPI) -> None:
    services: AppServices = app.state.services
    async with services.sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("SQLite searches its FTS5 table; this checks the PostgreSQL plan")
        # With sequential scans priced out, a plan without the index means the repository's
        # condition no longer matches the expression and predicate migration 0004 indexed.
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plans = []
        for sql in (
            f"EXPLAIN SELECT m.id FROM message AS m WHERE {MESSAGE_MATCH_SQL}",
            f"EXPLAIN SELECT c.id FROM chat AS c WHERE {TITLE_MATCH_SQL}",
        ):
            result = await session.execute(text(sql), {"q": tsquery([SearchTerm("zebra")])})
            plans.append("\n".join(row[0] for row in result))
    message_plan, title_plan = plans
    assert "chat_search_message_ix" in message_plan, message_plan
    assert "chat_search_title_ix" in title_plan, title_plan
