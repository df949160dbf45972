"""Backend unit fixtures: a real migrated SQLite file, the fake runner client, the app's
services after its lifespan has started."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.databases import database_url
from tests.support.fake_runner_client import FakeRunnerClient
from webui_backend.container import AppServices
from webui_backend.main import create_app
from webui_backend.settings import Settings


@pytest.fixture
def runner() -> FakeRunnerClient:
    return FakeRunnerClient()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data_dir = tmp_path / "data"
    return Settings(data_dir=data_dir, database_url=database_url(data_dir), max_message_chars=1000)


@pytest.fixture
async def services(settings: Settings, runner: FakeRunnerClient) -> AsyncIterator[AppServices]:
    app = create_app(settings, runner=runner)
    async with app.router.lifespan_context(app):
        yield app.state.services


async def account(
    services: AppServices, email: str = "owner@example.com", *, name: str = "Owner"
) -> str:
    """The id of an account with this email, registering it on first use (the first account
    of an app is its admin)."""
    user = await services.auth.register(email=email, password="correct horse 1", name=name)
    return user.id


@pytest.fixture
async def user_id(services: AppServices) -> str:
    return await account(services)
