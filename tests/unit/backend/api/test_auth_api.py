"""Accounts over REST: registration, roles, cookie + CSRF, tokens, API keys, rate limits."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.unit.backend.api.conftest import PASSWORD, Account, browser, register


async def test_first_account_is_admin_and_later_ones_wait(client: httpx.AsyncClient) -> None:
    config = (await client.get("/api/auth/config")).json()
    assert config == {"signup_enabled": True, "has_users": False}
    first = await register(client, "First@Example.com")
    second = await register(client, "second@example.com")
    me = (await client.get("/api/auth/me", headers=first.headers)).json()
    assert (me["role"], me["email"]) == ("admin", "first@example.com")
    waiting = await client.get("/api/auth/me", headers=second.headers)
    assert waiting.json()["role"] == "pending"
    refused = await client.get("/api/chats", headers=second.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "account_pending"
    duplicate = await client.post(
        "/api/auth/register",
        json={"email": "first@example.com", "password": PASSWORD, "name": "x"},
    )
    assert duplicate.status_code == 409


async def test_login_sets_cookie_session_and_csrf_guards_state_changes(
    app: FastAPI, admin: Account
) -> None:
    async with browser(app) as web:
        response = await web.post(
            "/api/auth/login", json={"email": admin.email, "password": PASSWORD}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] > 0
        set_cookie = response.headers.get_list("set-cookie")
        session_cookie = next(c for c in set_cookie if c.startswith("webui_session="))
        assert "HttpOnly" in session_cookie
        assert "samesite=lax" in session_cookie.lower()
        csrf = web.cookies["csrf_token"]

        assert (await web.get("/api/auth/me")).status_code == 200
        refused = await web.post("/api/chats", json={"title": "x"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
        created = await web.post("/api/chats", json={"title": "x"}, headers={"X-CSRF-Token": csrf})
        assert created.status_code == 201

        logout = await web.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert logout.status_code == 204
        web.cookies.set("webui_session", session_cookie.split(";")[0].split("=", 1)[1])
        after = await web.get("/api/auth/me")
        assert after.status_code == 401


async def test_a_csrf_token_of_another_session_is_refused(app: FastAPI, admin: Account) -> None:
    """An attacker who can plant cookies (a sibling subdomain) and holds a session of their
    own cannot pair their CSRF token with the victim's session."""
    async with browser(app) as attacker, browser(app) as victim:
        for web in (attacker, victim):
            login = await web.post(
                "/api/auth/login", json={"email": admin.email, "password": PASSWORD}
            )
            assert login.status_code == 200
        planted = attacker.cookies["csrf_token"]
        assert planted != victim.cookies["csrf_token"]
        victim.cookies.set("csrf_token", planted)
        forged = await victim.post(
            "/api/chats", json={"title": "x"}, headers={"X-CSRF-Token": planted}
        )
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "csrf_failed"


async def test_wrong_password_and_unknown_account_look_the_same(
    client: httpx.AsyncClient, admin: Account
) -> None:
    wrong = await client.post(
        "/api/auth/login", json={"email": admin.email, "password": "nope-nope"}
    )
    unknown = await client.post(
        "/api/auth/login", json={"email": "ghost@example.com", "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_login_is_rate_limited_per_account(client: httpx.AsyncClient, admin: Account) -> None:
    statuses = []
    for _ in range(11):
        response = await client.post(
            "/api/auth/login", json={"email": admin.email, "password": "wrong-password"}
        )
        statuses.append(response.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"


async def test_password_change_voids_older_tokens(
    client: httpx.AsyncClient, admin: Account
) -> None:
    wrong = await client.post(
        "/api/auth/password",
        json={"current_password": "not-it-at-all", "new_password": "another pass 2"},
        headers=admin.headers,
    )
    assert wrong.status_code == 400
    changed = await client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "another pass 2"},
        headers=admin.headers,
    )
    assert changed.status_code == 204
    assert (await client.get("/api/auth/me", headers=admin.headers)).status_code == 401
    login = await client.post(
        "/api/auth/login", json={"email": admin.email, "password": "another pass 2"}
    )
    assert login.status_code == 200


async def test_api_keys_authenticate_and_are_shown_once(
    client: httpx.AsyncClient, alice: Account
) -> None:
    created = await client.post("/api/keys", json={"name": "script"}, headers=alice.headers)
    assert created.status_code == 201
    key = created.json()
    assert key["secret"].startswith("sk-")
    assert key["secret"].startswith(key["prefix"])
    listed = (await client.get("/api/keys", headers=alice.headers)).json()["items"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert "secret" not in listed[0]

    as_key = {"Authorization": f"Bearer {key['secret']}"}
    me = await client.get("/api/auth/me", headers=as_key)
    assert me.json()["id"] == alice.id
    used = (await client.get("/api/keys", headers=alice.headers)).json()["items"][0]
    assert used["last_used_at"] is not None

    assert (await client.delete(f"/api/keys/{key['id']}", headers=alice.headers)).status_code == 204
    assert (await client.get("/api/auth/me", headers=as_key)).status_code == 401


async def test_expired_api_key_is_refused(client: httpx.AsyncClient, alice: Account) -> None:
    past = await client.post(
        "/api/keys",
        json={"name": "old", "expires_at": "2000-01-01T00:00:00Z"},
        headers=alice.headers,
    )
    assert past.status_code == 400


async def test_a_cached_api_key_stops_working_when_it_expires(
    client: httpx.AsyncClient, alice: Account
) -> None:
    """The account behind a key is cached for a few seconds; the entry ends with the key."""
    expires = datetime.now(UTC) + timedelta(seconds=1)
    created = await client.post(
        "/api/keys",
        json={"name": "short", "expires_at": expires.isoformat()},
        headers=alice.headers,
    )
    as_key = {"Authorization": f"Bearer {created.json()['secret']}"}
    assert (await client.get("/api/auth/me", headers=as_key)).status_code == 200  # cached now
    deadline = time.monotonic() + 10
    while True:
        response = await client.get("/api/auth/me", headers=as_key)
        if response.status_code != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    refused_at = datetime.now(UTC)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"
    # Sooner than the cache's own 5 s from the first use: the entry ended with the key.
    assert refused_at - expires < timedelta(seconds=3)


async def test_disabling_an_account_ends_its_sessions_and_keys_at_once(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    key = (await client.post("/api/keys", json={"name": "k"}, headers=alice.headers)).json()
    async with browser(app) as web:
        await web.post("/api/auth/login", json={"email": alice.email, "password": PASSWORD})
        assert (await web.get("/api/auth/me")).status_code == 200
        disabled = await client.patch(
            f"/api/admin/users/{alice.id}", json={"disabled": True}, headers=admin.headers
        )
        assert disabled.json()["disabled"] is True
        assert (await web.get("/api/auth/me")).status_code == 401
    for headers in (alice.headers, {"Authorization": f"Bearer {key['secret']}"}):
        assert (await client.get("/api/auth/me", headers=headers)).status_code == 401
    login = await client.post("/api/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert login.json()["error"]["code"] == "account_disabled"


async def test_signup_can_be_switched_off(client: httpx.AsyncClient, admin: Account) -> None:
    changed = await client.patch(
        "/api/admin/settings", json={"signup_enabled": False}, headers=admin.headers
    )
    assert changed.json()["signup_enabled"] is False
    refused = await client.post(
        "/api/auth/register", json={"email": "late@example.com", "password": PASSWORD, "name": "L"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "signup_disabled"
    assert (await client.get("/api/auth/config")).json() == {
        "signup_enabled": False,
        "has_users": True,
    }


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": "not-an-email", "password": "short", "name": "x"}
    )
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"email", "password"}
