"""REST tests: the real app (migrated SQLite file, lifespan) over an in-process ASGI
transport, with the fake runner client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.databases import database_url
from tests.support.fake_runner_client import FakeRunnerClient
from webui_backend.main import create_app
from webui_backend.settings import Settings

PASSWORD = "correct horse 1"


@dataclass
class Account:
    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Port 1 refuses at once: the registered runner is "down" without a wait.
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url(tmp_path / "data"),
        max_message_chars=1000,
        runner_address="127.0.0.1:1",
        runner_connect_timeout_s=1.0,
        title_generation=False,
    )


@pytest.fixture
async def app(settings: Settings, runner: FakeRunnerClient) -> AsyncIterator[FastAPI]:
    app = create_app(settings, runner=runner)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def browser(app: FastAPI) -> httpx.AsyncClient:
    """A second client with its own cookie jar."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def register(
    client: httpx.AsyncClient, email: str, *, name: str = "Someone", password: str = PASSWORD
) -> Account:
    response = await client.post(
        "/api/auth/register", json={"email": email, "password": password, "name": name}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return Account(id=body["user"]["id"], email=email, token=body["access_token"])


async def set_role(client: httpx.AsyncClient, admin: Account, user: Account, role: str) -> None:
    response = await client.patch(
        f"/api/admin/users/{user.id}", json={"role": role}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> Account:
    return await register(client, "admin@example.com", name="Admin")


@pytest.fixture
async def alice(client: httpx.AsyncClient, admin: Account) -> Account:
    account = await register(client, "alice@example.com", name="Alice")
    await set_role(client, admin, account, "user")
    return account


@pytest.fixture
async def bob(client: httpx.AsyncClient, admin: Account) -> Account:
    account = await register(client, "bob@example.com", name="Bob")
    await set_role(client, admin, account, "user")
    return account
