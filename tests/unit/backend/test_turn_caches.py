"""What the per-turn caches must keep true: an administrator's change applies to the next turn
or request of this process, and the usage upsert adds up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from model_runner.client import ModelSummary
from tests.support.fake_runner_client import FakeRunnerClient
from webui_backend.container import AppServices
from webui_backend.db.models import UserRole
from webui_backend.db.models_admin import ModelConfig
from webui_backend.db.repositories.admin import ModelConfigRepository
from webui_backend.errors import ForbiddenError, ModelNotFoundError, UnauthorizedError
from webui_backend.services import admin_models
from webui_backend.services.model_catalog import ModelCatalog
from webui_backend.services.new_turn import TurnRequest
from webui_backend.services.principal import AuthenticatedUser
from webui_backend.services.principal_cache import PrincipalCache
from webui_backend.services.usage import UsageService

from .conftest import account


async def _finish(services: AppServices, user_id: str, turn_id: str) -> None:
    async for _ in services.watcher.watch(user_id, turn_id):
        pass


async def _admin_and_user(services: AppServices) -> tuple[AuthenticatedUser, str]:
    admin_id = await account(services, "admin@example.com")
    user_id = await account(services, "user@example.com")
    await services.accounts.users.set_role(
        AuthenticatedUser(id=admin_id, role="admin"), user_id, UserRole.USER
    )
    return AuthenticatedUser(id=admin_id, role="admin"), user_id


async def test_model_changes_apply_to_the_next_turn(
    services: AppServices, runner: FakeRunnerClient
) -> None:
    admin, user_id = await _admin_and_user(services)
    access = services.accounts.model_access
    await access.update(admin, "fake", {"system_prompt": "First."})
    handle = await services.turns.start_turn(user_id, TurnRequest(content="Hi", model="fake"))
    await _finish(services, user_id, handle.turn_id)
    assert runner.last_call_ending_with("Hi")[0][0].content == "First."

    await access.update(admin, "fake", {"system_prompt": "Second."})
    handle = await services.turns.start_turn(user_id, TurnRequest(content="Hi", model="fake"))
    await _finish(services, user_id, handle.turn_id)
    assert runner.last_call_ending_with("Hi")[0][0].content == "Second."

    await access.update(admin, "fake", {"allowed_roles": ["admin"]})
    with pytest.raises(ModelNotFoundError):
        await services.turns.start_turn(user_id, TurnRequest(content="Hi", model="fake"))
    await access.update(admin, "fake", {"allowed_roles": [], "enabled": False})
    with pytest.raises(ModelNotFoundError):
        await services.turns.start_turn(admin.id, TurnRequest(content="Hi", model="fake"))


async def test_a_role_change_applies_to_a_restricted_model_at_once(services: AppServices) -> None:
    admin, user_id = await _admin_and_user(services)
    await services.accounts.model_access.update(admin, "fake", {"allowed_roles": ["user"]})
    handle = await services.turns.start_turn(user_id, TurnRequest(content="Hi", model="fake"))
    await _finish(services, user_id, handle.turn_id)
    await services.accounts.users.set_role(admin, user_id, UserRole.PENDING)
    with pytest.raises(ModelNotFoundError):
        await services.turns.start_turn(user_id, TurnRequest(content="Hi", model="fake"))


async def test_disabling_or_a_role_change_ends_cached_access_at_once(
    services: AppServices,
) -> None:
    admin, user_id = await _admin_and_user(services)
    login = await services.auth.login(
        email="user@example.com", password="correct horse 1", address="a", user_agent="t"
    )
    assert (await services.auth.authenticate_bearer(login.access_token)).role == "user"

    await services.accounts.users.set_role(admin, user_id, UserRole.ADMIN)
    assert (await services.auth.authenticate_bearer(login.access_token)).role == "admin"

    await services.accounts.users.set_disabled(admin, user_id, True)
    with pytest.raises((UnauthorizedError, ForbiddenError)):
        await services.auth.authenticate_bearer(login.access_token)


async def test_a_password_change_voids_cached_tokens(services: AppServices) -> None:
    await _admin_and_user(services)
    login = await services.auth.login(
        email="user@example.com", password="correct horse 1", address="a", user_agent="t"
    )
    principal = await services.auth.authenticate_bearer(login.access_token)
    await services.auth.change_password(
        principal, current_password="correct horse 1", new_password="another horse 2"
    )
    with pytest.raises(UnauthorizedError):
        await services.auth.authenticate_bearer(login.access_token)


def test_principal_cache_expires_and_skips_answers_older_than_a_change() -> None:
    now = [0.0]
    cache = PrincipalCache(ttl_s=5.0, clock=lambda: now[0])
    alice = AuthenticatedUser(id="a", role="user")
    cache.put("t1", alice, cache.generation)
    assert cache.get("t1") is alice
    now[0] = 5.0
    assert cache.get("t1") is None

    generation = cache.generation
    cache.forget_user("a")  # e.g. disabled while the row was being read
    cache.put("t1", alice, generation)
    assert cache.get("t1") is None


def test_principal_cache_entry_ends_with_its_token() -> None:
    """Cached tokens skip the signature check, so an entry must not outlive the token."""
    now = [100.0]
    cache = PrincipalCache(ttl_s=5.0, clock=lambda: now[0])
    alice = AuthenticatedUser(id="a", role="user")
    cache.put("t1", alice, cache.generation, expires_at=time.time() + 1.0)
    assert cache.get("t1") is alice
    now[0] += 1.5
    assert cache.get("t1") is None
    cache.put("t2", alice, cache.generation, expires_at=time.time() - 1.0)
    assert cache.get("t2") is None


async def test_usage_adds_up_over_turns(services: AppServices) -> None:
    _, user_id = await _admin_and_user(services)
    for _ in range(3):
        handle = await services.turns.start_turn(user_id, TurnRequest(content="Hi", model="fake"))
        await _finish(services, user_id, handle.turn_id)
    rows = await UsageService(services.sessions, services.transactions).query(
        start=None, end=None, user_id=user_id
    )
    assert [(r.model, r.requests, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        ("fake", 3, 9, 6)
    ]


async def test_usage_outside_a_chat_adds_to_the_same_row(services: AppServices) -> None:
    """`/v1` records usage through the turn writer (`TurnWrites.add_usage`): the same daily
    row as chat replies, on SQLite's bare statements and on PostgreSQL's Core ones."""
    _, user_id = await _admin_and_user(services)
    handle = await services.turns.start_turn(user_id, TurnRequest(content="Hi", model="fake"))
    await _finish(services, user_id, handle.turn_id)
    usage = UsageService(services.sessions, services.transactions)
    await usage.record(user_id, model="fake", prompt_tokens=10, completion_tokens=20)
    await usage.record(user_id, model="other", prompt_tokens=1, completion_tokens=2)
    rows = await usage.query(start=None, end=None, user_id=user_id)
    assert sorted((r.model, r.requests, r.prompt_tokens, r.completion_tokens) for r in rows) == [
        ("fake", 2, 13, 22),
        ("other", 1, 1, 2),
    ]


class _CountingRunner(FakeRunnerClient):
    def __init__(self) -> None:
        super().__init__()
        self.list_calls = 0
        self.broken = False

    async def list_models(self) -> list[ModelSummary]:
        self.list_calls += 1
        if self.broken:
            raise ValueError("an unexpected failure, not a RunnerError")
        return await super().list_models()


async def _eventually(
    check: Callable[[], bool],
    timeout_s: float = 5.0,
    step: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Polls `check` (after `step`, when given) until true; fails after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        # Polling is the point: the refresher has no event to wait on.
        while not check():
            await asyncio.sleep(0.02)
            if step is not None:
                await step()


async def test_the_catalog_stays_fresh_without_a_turn_waiting_for_it() -> None:
    runner = _CountingRunner()
    catalog = ModelCatalog(runner, ttl_s=0.2)
    assert await catalog.list()  # nothing cached yet: this one asks
    refresher = asyncio.create_task(catalog.run())
    try:
        # Well past the TTL, the list is still served from memory: the refresher keeps it.
        await _eventually(lambda: runner.list_calls >= 4)
        before = runner.list_calls
        assert await catalog.list()
        assert runner.list_calls == before
        # A refresh failure is left to the next turn's own fetch; the refresher goes on.
        runner.reachable = False
        failed_from = runner.list_calls
        await _eventually(lambda: runner.list_calls >= failed_from + 2)
        assert not refresher.done()
        # Nor does an unexpected error end it (it is logged).
        runner.broken = True
        failed_from = runner.list_calls
        await _eventually(lambda: runner.list_calls >= failed_from + 2)
        assert not refresher.done()
    finally:
        refresher.cancel()


async def test_another_workers_policy_change_is_read_in_the_background(
    services: AppServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, _ = await _admin_and_user(services)
    access = services.accounts.model_access
    await access.update(admin, "fake", {"system_prompt": "First."})
    assert (await access.model_settings("fake")).system_prompt == "First."

    # Another worker changes the row: this process hears nothing of it.
    async with services.sessions() as session, session.begin():
        await ModelConfigRepository(session).upsert("fake", {"system_prompt": "Second."})

    single_reads = 0
    real_get = ModelConfigRepository.get

    async def counting_get(self: ModelConfigRepository, model_id: str) -> ModelConfig | None:
        nonlocal single_reads
        single_reads += 1
        return await real_get(self, model_id)

    monkeypatch.setattr(ModelConfigRepository, "get", counting_get)
    monkeypatch.setattr(admin_models, "_POLICY_TTL_S", 0.6)
    refresher = asyncio.create_task(access.run())
    try:
        seen: list[str] = []

        async def latest() -> None:
            seen.append((await access.model_settings("fake")).system_prompt)

        await latest()
        await _eventually(lambda: seen[-1] == "Second.", step=latest)
        single_reads = 0
        # Two TTLs later a turn still finds the policy cached: no query of its own.
        for _ in range(8):
            await asyncio.sleep(0.15)
            await latest()
        assert seen[-1] == "Second."
        assert single_reads == 0
    finally:
        refresher.cancel()
