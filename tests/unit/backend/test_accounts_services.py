"""Accounts and administration services in isolation: limiter, search query, titles, import
ordering, secrets, policy merging, runner load/unload through a fake client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    LoadProgressEvent,
    ModelSummary,
    RunnerLoad,
    RunnerModelNotFoundError,
)
from tests.support.fake_runner_client import FakeRunnerClient, reply_script
from tests.unit.backend.conftest import account
from webui_backend.container import AppServices
from webui_backend.db.repositories.chat_search import SearchTerm, fts5_match, tsquery
from webui_backend.errors import InvalidInputError, NotFoundError, RateLimitedError
from webui_backend.services.admin_runners import RunnerAdminClient, RunnerAdminService
from webui_backend.services.auth_crypto import AccessTokens, load_or_create_secret
from webui_backend.services.chat_import_export import parse_import
from webui_backend.services.chats import ChatChanges, search_terms
from webui_backend.services.new_turn import TurnRequest
from webui_backend.services.principal import AuthenticatedUser
from webui_backend.services.rate_limit import SlidingWindowLimiter
from webui_backend.services.titles import clean_title
from webui_backend.services.turn_policy import TurnModelSettings, apply_model_settings
from webui_backend.settings import Settings


async def test_limiter_refuses_past_the_limit_and_frees_a_slot_after_the_window() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(clock=lambda: now[0])
    for _ in range(3):
        await limiter.check("k", limit=3, what="tries")
    with pytest.raises(RateLimitedError) as refused:
        await limiter.check("k", limit=3, what="tries")
    assert refused.value.retry_after_s == 60
    now[0] = 60.5
    await limiter.check("k", limit=3, what="tries")
    await limiter.check("other", limit=0, what="tries")  # 0 = unlimited


def test_search_query_quotes_words_and_only_prefixes_on_request() -> None:
    terms = search_terms('apple "pie" OR')
    assert terms == [SearchTerm("apple"), SearchTerm("pie"), SearchTerm("OR")]
    assert fts5_match(terms, "u-1") == '({body} : ("apple" "pie" "OR")) AND (keys : "uu1")'
    assert tsquery(terms) == "'apple' & 'pie' & 'OR'"
    assert search_terms("prog*") == [SearchTerm("prog", prefix=True)]
    assert tsquery(search_terms("prog* x*")) == "'prog':* & 'x'"
    assert search_terms("don't") == [SearchTerm("don"), SearchTerm("t")]
    assert tsquery([SearchTerm("it's")]) == "'it''s'"
    with pytest.raises(InvalidInputError):
        search_terms(" ,;* ")


def test_title_is_cleaned() -> None:
    assert clean_title('Title: "Trip to Lisbon".\nmore') == "Trip to Lisbon"
    assert clean_title("  ") == ""
    assert len(clean_title("x" * 200)) == 80


def test_secret_is_generated_once_and_placeholders_are_refused(tmp_path: Path) -> None:
    first = load_or_create_secret("", tmp_path)
    assert load_or_create_secret("", tmp_path) == first
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(environment="production", jwt_secret="changeme")
    Settings(environment="production", jwt_secret="z" * 40)
    tokens = AccessTokens(first, 60)
    assert tokens.decode(tokens.issue("u1", 3)).token_version == 3


def test_model_defaults_fill_only_unset_options() -> None:
    history = [ChatMessage(role="user", content="hi")]
    settings = TurnModelSettings(
        params={"temperature": 0.1, "max_tokens": 50, "stop": ["END"], "bogus": 1},
        system_prompt="Be kind.",
    )
    merged, options = apply_model_settings(history, GenerationOptions(max_tokens=9), settings)
    assert merged[0] == ChatMessage(role="system", content="Be kind.")
    assert (options.temperature, options.max_tokens, options.stop) == (0.1, 9, ("END",))
    own_system = [ChatMessage(role="system", content="mine"), *history]
    assert apply_model_settings(own_system, options, settings)[0] == own_system


def test_import_refuses_duplicates_and_orders_parents_first() -> None:
    message = {"role": "user", "content": "x"}
    doc = {
        "chat": {
            "history": {
                "messages": {
                    "b": {"id": "b", "parentId": "a", **message},
                    "a": {"id": "a", "parentId": None, **message},
                }
            }
        }
    }
    [chat] = parse_import(doc)
    assert {m.key for m in chat.messages} == {"a", "b"}
    with pytest.raises(InvalidInputError):
        parse_import([])
    with pytest.raises(InvalidInputError, match="role"):
        parse_import({"chat": {"messages": [{"role": "wizard", "content": "x"}]}})


async def test_title_replaces_the_provisional_one_unless_renamed(
    services: AppServices, runner: FakeRunnerClient
) -> None:
    owner = await account(services)
    runner.scripts += [reply_script("Sure"), reply_script("Lisbon", " trip")]
    handle = await services.turns.start_turn(
        owner, TurnRequest(content="Plan a trip to Lisbon please")
    )
    async for _ in services.hub.subscribe(handle.turn_id, owner):
        pass
    # The title task is not ours to await; poll with a deadline.
    async with asyncio.timeout(5):
        while (await services.chats.get_chat(owner, handle.chat_id)).chat.title != "Lisbon trip":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    title_call = runner.calls[-1]
    assert title_call[2] is not None
    assert title_call[2].max_tokens == 24

    await services.chats.update_chat(owner, handle.chat_id, ChatChanges(title="Mine"))
    await services.accounts.titles.write_title(owner, handle.chat_id, "")
    assert (await services.chats.get_chat(owner, handle.chat_id)).chat.title == "Mine"


class _FakeAdminClient:
    def __init__(self) -> None:
        self.unloaded: list[str] = []

    async def check_health(self) -> bool:
        return True

    async def list_models(self) -> list[ModelSummary]:
        return [ModelSummary("m", "fake", "ready", 4096, True)]

    async def get_load(self) -> RunnerLoad:
        return RunnerLoad(running=0, queued=0, max_running=4, max_queued=16, draining=False)

    async def load_model(self, model: str) -> AsyncIterator[LoadProgressEvent]:
        if model == "missing":
            raise RunnerModelNotFoundError("no such model")
        for state in ("loading", "ready"):
            yield LoadProgressEvent(
                state=state, status="", completed_bytes=0, total_bytes=0, model=None
            )

    async def unload_model(self, model: str, *, drain_timeout_s: float = 0.0) -> int:
        self.unloaded.append(model)
        return 2

    async def close(self) -> None:
        return None


async def test_runner_load_and_unload_go_through_the_client(services: AppServices) -> None:
    owner = await account(services)
    admin = AuthenticatedUser(id=owner, role="admin", email="owner@example.com")
    fake = _FakeAdminClient()

    def factory(address: str) -> RunnerAdminClient:
        return fake

    runners = RunnerAdminService(sessions=services.sessions, client_factory=factory)
    [status] = await runners.list()
    assert status.healthy
    assert [m.id for m in status.models] == ["m"]
    assert await runners.load_model(admin, status.id, "m") == "ready"
    assert await runners.unload_model(admin, status.id, "m") == 2
    assert fake.unloaded == ["m"]
    with pytest.raises(NotFoundError):
        await runners.load_model(admin, status.id, "missing")
    entries = await services.accounts.audit.page(limit=10)
    assert [e.action for e in entries] == ["runner.unload_model", "runner.load_model"]
