"""The chat turn against a real migrated SQLite file and a scripted runner."""

from __future__ import annotations

import asyncio

import pytest

from model_runner.client import RunnerUnavailableError
from tests.support.fake_runner_client import FakeRunnerClient, reply_script
from webui_backend.container import AppServices
from webui_backend.db.models import MessageStatus
from webui_backend.errors import (
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
)
from webui_backend.services.chat_turn import TurnRequest
from webui_backend.services.turn_events import TurnEvent, TurnFinished


async def watch(services: AppServices, turn_id: str, user_id: str) -> list[TurnEvent]:
    events: list[TurnEvent] = []
    async for batch in services.hub.subscribe(turn_id, user_id):
        events.extend(batch)
    return events


async def test_turn_stores_user_message_before_generation_and_reply_after(
    services: AppServices, user_id: str, runner: FakeRunnerClient
) -> None:
    gate = asyncio.Event()
    runner.scripts.append([*reply_script("Hi")[:1], gate, *reply_script("Hi")[1:]])
    user = user_id
    handle = await services.turns.start_turn(user, TurnRequest(content="Hello?"))

    detail = await services.chats.get_chat(user, handle.chat_id)
    by_id = {m.id: m for m in detail.messages}
    assert by_id[handle.user_message_id].content == "Hello?"
    assert by_id[handle.assistant_message_id].status is MessageStatus.STREAMING
    assert detail.active_branch == [handle.user_message_id, handle.assistant_message_id]

    gate.set()
    events = await asyncio.wait_for(watch(services, handle.turn_id, user), 5)
    assert [e.seq for e in events] == [1, 2, 3]
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    assert finished.status == "complete"

    reply = {m.id: m for m in (await services.chats.get_chat(user, handle.chat_id)).messages}[
        handle.assistant_message_id
    ]
    assert reply.content == "Hi"
    assert reply.status is MessageStatus.COMPLETE
    assert reply.finish_reason == "eos"
    assert (reply.prompt_tokens, reply.completion_tokens) == (3, 1)
    assert reply.model == "fake"


async def test_second_turn_sends_the_branch_history(
    services: AppServices, user_id: str, runner: FakeRunnerClient
) -> None:
    user = user_id
    first = await services.turns.start_turn(user, TurnRequest(content="one"))
    await watch(services, first.turn_id, user)
    second = await services.turns.start_turn(
        user, TurnRequest(content="two", chat_id=first.chat_id)
    )
    await watch(services, second.turn_id, user)
    history = runner.last_call_ending_with("two")[0]
    assert [(m.role, m.content) for m in history] == [
        ("user", "one"),
        ("assistant", "Hello there"),
        ("user", "two"),
    ]


async def test_editing_creates_a_sibling_branch(
    services: AppServices, user_id: str, runner: FakeRunnerClient
) -> None:
    user = user_id
    first = await services.turns.start_turn(user, TurnRequest(content="one"))
    await watch(services, first.turn_id, user)
    # Re-answer the first question: a new user message under the same (root) parent.
    edit = await services.turns.start_turn(
        user,
        TurnRequest(
            content="one, edited", chat_id=first.chat_id, parent_id=None, use_active_leaf=False
        ),
    )
    await watch(services, edit.turn_id, user)
    detail = await services.chats.get_chat(user, first.chat_id)
    assert len(detail.messages) == 4
    assert detail.active_branch[-1] == edit.assistant_message_id


@pytest.mark.parametrize(
    ("content", "error"),
    [("", InvalidInputError), ("   \n", InvalidInputError), ("x" * 1001, PayloadTooLargeError)],
)
async def test_bad_messages_store_nothing(
    services: AppServices, user_id: str, content: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await services.turns.start_turn(user_id, TurnRequest(content=content))
    assert await services.chats.list_chats(user_id) == []


async def test_unknown_chat_parent_and_model_store_nothing(
    services: AppServices, user_id: str
) -> None:
    user = user_id
    with pytest.raises(NotFoundError):
        await services.turns.start_turn(user, TurnRequest(content="hi", chat_id="nope"))
    chat = await services.chats.create_chat(user)
    with pytest.raises(NotFoundError):
        await services.turns.start_turn(
            user,
            TurnRequest(content="hi", chat_id=chat.id, parent_id="nope", use_active_leaf=False),
        )
    with pytest.raises(ModelNotFoundError, match="Available: fake"):
        await services.turns.start_turn(user, TurnRequest(content="hi", model="gpt-9"))
    assert (await services.chats.get_chat(user, chat.id)).messages == []


async def test_another_users_chat_is_not_found(services: AppServices, user_id: str) -> None:
    first = await services.turns.start_turn(user_id, TurnRequest(content="mine"))
    with pytest.raises(NotFoundError):
        await services.turns.start_turn(
            "someone-else", TurnRequest(content="x", chat_id=first.chat_id)
        )
    with pytest.raises(NotFoundError):
        await services.chats.get_chat("someone-else", first.chat_id)


async def test_unreachable_runner_keeps_the_user_message_and_reports_it(
    services: AppServices, user_id: str, runner: FakeRunnerClient
) -> None:
    runner.reachable = False
    user = user_id
    handle = await services.turns.start_turn(user, TurnRequest(content="anyone there?"))
    events = await asyncio.wait_for(watch(services, handle.turn_id, user), 5)
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    assert (finished.status, finished.error_code) == ("error", "runner_unavailable")
    assert finished.error_message is not None
    assert "unavailable" in finished.error_message
    messages = {m.id: m for m in (await services.chats.get_chat(user, handle.chat_id)).messages}
    assert messages[handle.user_message_id].content == "anyone there?"
    assert messages[handle.assistant_message_id].status is MessageStatus.ERROR


async def test_stream_breaking_mid_reply_keeps_partial_text_as_interrupted(
    services: AppServices, user_id: str, runner: FakeRunnerClient
) -> None:
    runner.scripts.append(
        [*reply_script("Par", "tial")[:3], RunnerUnavailableError("connection reset")]
    )
    user = user_id
    handle = await services.turns.start_turn(user, TurnRequest(content="tell me"))
    events = await asyncio.wait_for(watch(services, handle.turn_id, user), 5)
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].status == "interrupted"
    reply = {m.id: m for m in (await services.chats.get_chat(user, handle.chat_id)).messages}[
        handle.assistant_message_id
    ]
    assert (reply.content, reply.status) == ("Partial", MessageStatus.INTERRUPTED)


async def test_shutdown_mid_reply_stores_it_as_interrupted(
    services: AppServices, user_id: str, runner: FakeRunnerClient
) -> None:
    never = asyncio.Event()
    runner.scripts.append([*reply_script("So far")[:2], never])
    user = user_id
    handle = await services.turns.start_turn(user, TurnRequest(content="long one"))

    async def first_delta() -> None:
        async for batch in services.hub.subscribe(handle.turn_id, user):
            if any(e.seq == 2 for e in batch):
                return

    await asyncio.wait_for(first_delta(), 5)
    await services.tasks.shutdown()
    assert runner.cancelled == [handle.turn_id]
    reply = {m.id: m for m in (await services.chats.get_chat(user, handle.chat_id)).messages}[
        handle.assistant_message_id
    ]
    assert (reply.content, reply.status) == ("So far", MessageStatus.INTERRUPTED)
