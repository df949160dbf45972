"""Administration over REST: users, models and their policy, runners, settings, usage, audit."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.support.fake_runner_client import FakeRunnerClient
from tests.unit.backend.api.conftest import Account, register
from webui_backend.container import AppServices
from webui_backend.services.new_turn import TurnRequest


async def _finish(services: AppServices, user: Account, content: str, model: str = "") -> str:
    handle = await services.turns.start_turn(user.id, TurnRequest(content=content, model=model))
    async for _ in services.hub.subscribe(handle.turn_id, user.id):
        pass
    return handle.chat_id


async def test_users_search_role_and_last_admin_guard(
    client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    listed = (
        await client.get("/api/admin/users", params={"q": "ALI"}, headers=admin.headers)
    ).json()
    assert [u["email"] for u in listed["items"]] == ["alice@example.com"]
    assert listed["total"] == 1
    demote_self = await client.patch(
        f"/api/admin/users/{admin.id}", json={"role": "user"}, headers=admin.headers
    )
    assert demote_self.status_code == 409
    assert demote_self.json()["error"]["code"] == "last_admin"
    promoted = await client.patch(
        f"/api/admin/users/{alice.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.json()["role"] == "admin"
    assert (await client.get("/api/admin/users", headers=alice.headers)).status_code == 200
    missing = await client.patch(
        "/api/admin/users/nope", json={"role": "user"}, headers=admin.headers
    )
    assert missing.status_code == 404


async def test_deleting_a_user_deletes_their_chats(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    services: AppServices = app.state.services
    chat_id = await _finish(services, alice, "to be deleted")
    assert (
        await client.delete(f"/api/admin/users/{alice.id}", headers=admin.headers)
    ).status_code == 204
    assert (await client.get(f"/api/chats/{chat_id}", headers=admin.headers)).status_code == 404
    assert (await client.get("/api/auth/me", headers=alice.headers)).status_code == 401
    self_delete = await client.delete(f"/api/admin/users/{admin.id}", headers=admin.headers)
    assert self_delete.status_code == 409


async def test_model_policy_reaches_the_turn(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    alice: Account,
    runner: FakeRunnerClient,
) -> None:
    runner.models = ["fake", "big"]
    configured = await client.patch(
        "/api/admin/models/fake",
        json={
            "display_name": "Fake One",
            "params": {"temperature": 0.2, "max_tokens": 64},
            "system_prompt": "Be brief.",
        },
        headers=admin.headers,
    )
    assert configured.status_code == 200, configured.text
    assert configured.json()["display_name"] == "Fake One"
    await client.patch(
        "/api/admin/models/big", json={"allowed_roles": ["admin"]}, headers=admin.headers
    )

    visible = (await client.get("/api/models", headers=alice.headers)).json()["items"]
    assert [m["id"] for m in visible] == ["fake"]
    assert visible[0]["params"] == {"temperature": 0.2, "max_tokens": 64}
    assert {
        m["id"] for m in (await client.get("/api/models", headers=admin.headers)).json()["items"]
    } == {"fake", "big"}

    services: AppServices = app.state.services
    await _finish(services, alice, "hello", model="fake")
    messages, model, options = runner.last_call_ending_with("hello")
    assert messages[0].role == "system"
    assert messages[0].content == "Be brief."
    assert model == "fake"
    assert options is not None
    assert (options.temperature, options.max_tokens) == (0.2, 64)

    refused = await client.post(
        "/api/turns", json={"content": "hi", "model": "big"}, headers=alice.headers
    )
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"

    await client.patch("/api/admin/models/fake", json={"enabled": False}, headers=admin.headers)
    disabled = await client.post(
        "/api/turns", json={"content": "hi", "model": "fake"}, headers=alice.headers
    )
    assert disabled.status_code == 404


async def test_usage_is_recorded_per_user_model_and_day(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    services: AppServices = app.state.services
    await _finish(services, alice, "one")
    await _finish(services, alice, "two")
    usage = (await client.get("/api/admin/usage", headers=admin.headers)).json()
    rows = [r for r in usage["items"] if r["user_id"] == alice.id]
    assert len(rows) == 1
    assert rows[0]["requests"] == 2
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (6, 4)
    assert rows[0]["model"] == "fake"
    reversed_range = await client.get(
        "/api/admin/usage",
        params={"start": "2026-02-01", "end": "2026-01-01"},
        headers=admin.headers,
    )
    assert reversed_range.status_code == 400


async def test_runners_registry_and_audit_log(client: httpx.AsyncClient, admin: Account) -> None:
    runners = (await client.get("/api/admin/runners", headers=admin.headers)).json()["items"]
    assert [r["address"] for r in runners] == ["127.0.0.1:1"]
    assert runners[0]["healthy"] is False
    assert runners[0]["error"]

    bad = await client.post(
        "/api/admin/runners", json={"address": "not an address"}, headers=admin.headers
    )
    assert bad.status_code == 400
    added = await client.post(
        "/api/admin/runners",
        json={"address": "127.0.0.1:2", "name": "second"},
        headers=admin.headers,
    )
    assert added.status_code == 201, added.text
    again = await client.post(
        "/api/admin/runners", json={"address": "127.0.0.1:2"}, headers=admin.headers
    )
    assert again.status_code == 409
    runner_id = added.json()["id"]
    assert (
        await client.delete(f"/api/admin/runners/{runner_id}", headers=admin.headers)
    ).status_code == 204
    last = runners[0]["id"]
    assert (
        await client.delete(f"/api/admin/runners/{last}", headers=admin.headers)
    ).status_code == 409

    audit = (await client.get("/api/admin/audit", headers=admin.headers)).json()["items"]
    actions = [e["action"] for e in audit]
    assert actions[:2] == ["runner.remove", "runner.register"]
    assert all(e["actor_email"] == admin.email for e in audit)


async def test_default_role_user_skips_the_wait(client: httpx.AsyncClient, admin: Account) -> None:
    await client.patch("/api/admin/settings", json={"default_role": "user"}, headers=admin.headers)
    newcomer = await register(client, "new@example.com")
    assert (await client.get("/api/chats", headers=newcomer.headers)).status_code == 200
    settings = (await client.get("/api/admin/settings", headers=admin.headers)).json()
    assert settings["default_role"] == "user"
    invalid = await client.patch(
        "/api/admin/settings", json={"default_role": "admin"}, headers=admin.headers
    )
    assert invalid.status_code == 422
