"""The chat turn against a real migrated SQLite file and a scripted runner."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest

from model_runner.client import RunnerUnavailableError
from tests.support.fake_runner_client import FakeRunnerClient, reply_script
from tests.support.polling import wait_until
from webui_backend.container import AppServices
from webui_backend.db.models import Message, MessageStatus
from webui_backend.errors import (
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
)
from webui_backend.services.new_turn import TurnRequest
from webui_backend.services.turn_events import TurnEvent, TurnFinished
from webui_backend.services.turn_handle import TurnHandle


async def watch(services: AppServices, turn_id: str, user_id: str) -> list[TurnEvent]:
    events: list[TurnEvent] = []
    async for batch in services.hub.subscribe(turn_id, user_id):
        events.extend(batch)
    return events


async def stored_reply(services: AppServices, user_id: str, handle: TurnHandle) -> Message:
    """The turn's assistant message as stored."""
    messages = (await services.chats.get_chat(user_id, handle.chat_id)).messages
    return next(m for m in messages if m.id == handle.assistant_message_id)


async def test_turn_is_stored_when_accepted_and_its_reply_when_finished(
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

    reply = await stored_reply(services, user, handle)
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
    reply = await stored_reply(services, user, handle)
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
    reply = await stored_reply(services, user, handle)
    assert (reply.content, reply.status) == ("So far", MessageStatus.INTERRUPTED)


class _HeldCommit:
    """Holds the next transaction on the turn writer after its work and before its commit,
    until the test releases it (and, with `fail`, makes it fail instead of committing)."""

    def __init__(self, services: AppServices, monkeypatch: pytest.MonkeyPatch) -> None:
        if not services.settings.is_sqlite:
            pytest.skip("holds a commit on the SQLite writer thread (PostgreSQL's run on the loop)")
        self.release = threading.Event()
        self.fail: Exception | None = None
        self.armed = True
        self._run_writes = services.transactions.run_writes
        monkeypatch.setattr(services.transactions, "run_writes", self._held_run_writes)

    async def _held_run_writes(self, work: Callable[[Any], Any]) -> Any:
        if not self.armed:
            return await self._run_writes(work)
        self.armed = False

        def held(writes: Any) -> Any:
            result = work(writes)
            self.release.wait(10)  # on the writer thread: the event loop runs on
            if self.fail is not None:
                raise self.fail
            return result

        return await self._run_writes(held)


async def test_the_runner_starts_while_the_turn_commits(
    services: AppServices, user_id: str, runner: FakeRunnerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = _HeldCommit(services, monkeypatch)
    start = asyncio.create_task(services.turns.start_turn(user_id, TurnRequest(content="Hi?")))
    await wait_until(lambda: runner.calls)
    assert not start.done()  # accepted only once committed
    assert await services.chats.list_chats(user_id) == []  # not committed yet
    commit.release.set()
    handle = await asyncio.wait_for(start, 5)
    events = await asyncio.wait_for(watch(services, handle.turn_id, user_id), 5)
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].status == "complete"
    reply = await stored_reply(services, user_id, handle)
    assert (reply.content, reply.status) == ("Hello there", MessageStatus.COMPLETE)


async def test_a_turn_whose_commit_fails_is_dropped_and_its_runner_call_cancelled(
    services: AppServices, user_id: str, runner: FakeRunnerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = await services.turns.start_turn(user_id, TurnRequest(content="one"))
    await watch(services, chat.turn_id, user_id)
    await wait_until(lambda: len(runner.calls) == 2)  # the new chat's title: not our script's
    before = await services.chats.get_chat(user_id, chat.chat_id)
    stored_before = [(m.id, m.content, m.status) for m in before.messages]
    commit = _HeldCommit(services, monkeypatch)
    commit.fail = sqlite3.OperationalError("disk I/O error")
    runner.scripts.append([*reply_script("Never")[:2], asyncio.Event()])  # runs until cancelled
    start = asyncio.create_task(
        services.turns.start_turn(user_id, TurnRequest(content="two", chat_id=chat.chat_id))
    )
    await wait_until(lambda: any(call[0][-1].content == "two" for call in runner.calls))
    commit.release.set()
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        await asyncio.wait_for(start, 5)
    await wait_until(lambda: len(runner.cancelled) == 1)
    await wait_until(lambda: services.hub.live_turn_ids() == [])
    after = await services.chats.get_chat(user_id, chat.chat_id)
    assert [(m.id, m.content, m.status) for m in after.messages] == stored_before
    assert after.active_branch == before.active_branch
    # The chat goes on.
    again = await services.turns.start_turn(
        user_id, TurnRequest(content="two again", chat_id=chat.chat_id)
    )
    events = await asyncio.wait_for(watch(services, again.turn_id, user_id), 5)
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].status == "complete"


async def test_a_keyed_send_calls_the_runner_only_after_its_commit(
    services: AppServices, user_id: str, runner: FakeRunnerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = _HeldCommit(services, monkeypatch)
    request = TurnRequest(content="once", turn_key="key-1")
    one = asyncio.create_task(services.turns.start_turn(user_id, request))
    two = asyncio.create_task(services.turns.start_turn(user_id, request))
    await wait_until(lambda: not commit.armed)  # one of them is committing
    assert runner.calls == []
    commit.release.set()
    first, second = await asyncio.wait_for(asyncio.gather(one, two), 5)
    assert first.turn_id == second.turn_id
    await watch(services, first.turn_id, user_id)
    assert len(runner.turn_metadata()) == 1
