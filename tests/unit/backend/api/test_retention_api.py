"""`GET /api/admin/retention`: the policy in effect and the newest pass."""

from __future__ import annotations

from datetime import datetime

import httpx
from fastapi import FastAPI

from tests.unit.backend.api.conftest import Account
from webui_backend.container import AppServices
from webui_backend.services.retention import RetentionJob, RetentionPolicy


async def test_the_policy_and_the_last_pass(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    off = await client.get("/api/admin/retention", headers=admin.headers)
    assert off.status_code == 200, off.text
    assert off.json() == {
        "enabled": False,
        "days": 0,
        "keep_pinned": True,
        "interval_s": 3600.0,
        "batch_size": 100,
        "last_pass": None,
    }
    assert (await client.get("/api/admin/retention", headers=alice.headers)).status_code == 403

    services: AppServices = app.state.services
    policy = RetentionPolicy(
        days=1, keep_pinned=True, interval_s=60, batch_size=10, vacuum_min_free_bytes=0
    )
    done = await RetentionJob(
        policy,
        engine=services.engine,
        transactions=services.transactions,
        sessions=services.sessions,
    ).run_pass()
    assert done is not None

    last = (await client.get("/api/admin/retention", headers=admin.headers)).json()["last_pass"]
    assert last["chats_deleted"] == 0
    assert last["messages_deleted"] == 0
    assert last["vacuum"] in ("none", "autovacuum")
    assert datetime.fromisoformat(last["started_at"]) == done.started_at
