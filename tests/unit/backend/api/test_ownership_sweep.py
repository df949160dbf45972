"""The ownership sweep: every route in the OpenAPI document, called by Bob with Alice's ids.

For each operation Bob's answer with Alice's chat, message, key or share id must be exactly
the answer for an id that does not exist (status and error code), never a success, and
Alice's data must be unchanged afterwards. New routes are covered automatically; a path
parameter the sweep does not know fails the test, so it cannot be skipped silently.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from tests.unit.backend.api.conftest import Account
from webui_backend.container import AppServices
from webui_backend.services.new_turn import TurnRequest

# Public by design: the share id is the credential (an unguessable 192-bit token).
_PUBLIC = {("get", "/api/shares/{share_id}"), ("get", "/api/auth/config")}
# Administrator routes: Bob (a user) is refused before any id is looked at.
_ADMIN_PREFIX = "/api/admin"
_GHOST = "00000000-0000-4000-8000-000000000000"


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _resolve(spec, options[0]) if options else {"type": "null"}
    return schema


def _sample(spec: dict[str, Any], schema: dict[str, Any], name: str, ids: dict[str, str]) -> Any:
    schema = _resolve(spec, schema)
    if name in ids:
        return ids[name]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        wanted = set(schema.get("required", [])) | (set(props) & set(ids))
        return {key: _sample(spec, props[key], key, ids) for key in wanted}
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "string":
        return {"email": "x@example.com"}.get(name, "a plausible value")
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    return {}


async def _call(
    client: httpx.AsyncClient,
    spec: dict[str, Any],
    method: str,
    path: str,
    op: dict[str, Any],
    ids: dict[str, str],
    headers: dict[str, str],
) -> tuple[int, str | None]:
    url = path
    for param in op.get("parameters", []):
        if param["in"] == "path":
            assert param["name"] in ids, f"the sweep does not know {param['name']} ({path})"
            url = url.replace("{" + param["name"] + "}", ids[param["name"]])
    params = {
        p["name"]: ids[p["name"]]
        for p in op.get("parameters", [])
        if p["in"] == "query" and p["name"] in ids
    }
    if any(p["name"] == "q" and p["required"] for p in op.get("parameters", [])):
        params["q"] = "secret"
    body = None
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = _sample(spec, content["application/json"].get("schema", {}), "", ids)
    async with asyncio.timeout(10):
        response = await client.request(method, url, params=params, json=body, headers=headers)
    code = None
    if response.headers.get("content-type", "").startswith("application/json"):
        payload = response.json()
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            code = payload["error"].get("code")
    return response.status_code, code


async def test_no_route_reveals_or_changes_another_users_data(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    services: AppServices = app.state.services
    handle = await services.turns.start_turn(alice.id, TurnRequest(content="alice's secret"))
    async for _ in services.hub.subscribe(handle.turn_id, alice.id):
        pass
    key = (await client.post("/api/keys", json={"name": "k"}, headers=alice.headers)).json()
    share = (await client.post(f"/api/chats/{handle.chat_id}/shares", headers=alice.headers)).json()
    before = (await client.get(f"/api/chats/{handle.chat_id}", headers=alice.headers)).json()

    alice_ids = {
        "chat_id": handle.chat_id,
        "turn_id": handle.turn_id,
        "reply_id": handle.turn_id,
        "message_id": handle.user_message_id,
        "parent_id": handle.user_message_id,
        "key_id": key["id"],
        "share_id": share["id"],
        "user_id": alice.id,
        "runner_id": _GHOST,
        "model_id": "fake",
    }
    ghost_ids = {
        name: (_GHOST if name not in ("model_id",) else "no-such-model") for name in alice_ids
    }
    ghost_ids["user_id"] = _GHOST

    spec = app.openapi()
    checked = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if (method, path) in _PUBLIC or not op.get("security"):
                continue
            foreign = await _call(client, spec, method, path, op, alice_ids, bob.headers)
            missing = await _call(client, spec, method, path, op, ghost_ids, bob.headers)
            where = f"{method.upper()} {path}"
            if path.startswith(_ADMIN_PREFIX):
                assert foreign == missing == (403, "admin_required"), where
                continue
            has_ids = "{" in path or any(k in str(op.get("requestBody", "")) for k in alice_ids)
            if has_ids:
                assert foreign == missing, f"{where}: {foreign} != {missing}"
                assert foreign[0] not in range(200, 300), f"{where}: succeeded with {foreign}"
            checked += 1
    assert checked >= 15

    after = (await client.get(f"/api/chats/{handle.chat_id}", headers=alice.headers)).json()
    assert after == before
    keys = (await client.get("/api/keys", headers=alice.headers)).json()["items"]
    assert [k["id"] for k in keys] == [key["id"]]
    assert (await client.get(f"/api/shares/{share['id']}")).status_code == 200
    bobs = (await client.get("/api/chats", headers=bob.headers)).json()["items"]
    assert all(c["title"] != "alice's secret" for c in bobs)
    hits = (
        await client.get("/api/chats/search", params={"q": "secret"}, headers=bob.headers)
    ).json()["items"]
    assert hits == []
