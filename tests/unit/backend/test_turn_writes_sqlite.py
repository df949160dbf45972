"""`TurnWrites` through `Transactions.run_writes`: the same statements and the same stored rows
on both implementations (bare `sqlite3` on SQLite, Core over a `Session` elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import DateTime, select, text
from sqlalchemy.dialects import sqlite

from tests.unit.backend.conftest import account
from webui_backend.container import AppServices
from webui_backend.db.models import Chat, Message, MessageRole, MessageStatus, new_id
from webui_backend.db.models_admin import UsageDaily
from webui_backend.db.models_turns import TurnKey
from webui_backend.db.repositories.messages import ReplyOutcome
from webui_backend.db.repositories.turn_writes import (
    Checkpoint,
    SessionTurnWrites,
    TurnWrites,
    message_row,
)
from webui_backend.db.repositories.turn_writes_sqlite import sqlite_datetime
from webui_backend.services.turn_handle import TurnHandle
from webui_backend.services.turn_keys import turn_key_row

# A whole second: the stored text must still carry six fractional digits.
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Ids:
    user: str
    chat: str
    question: str
    reply: str

    @classmethod
    def new(cls, user: str) -> Ids:
        return cls(user, new_id(), new_id(), new_id())


def scenario(writes: TurnWrites, ids: Ids) -> list[Any]:
    """A turn's statements in the order the app runs them, plus the edge cases (a foreign
    chat, a taken key, late checkpoints, a second usage row); returns what each read saw."""
    seen: list[Any] = []
    writes.add_chat(chat_id=ids.chat, user_id=ids.user, title="A title", at=AT)
    seen.append(writes.owned_chat_leaf(ids.chat, ids.user))
    seen.append(writes.owned_chat_leaf(ids.chat, "someone else"))
    writes.add_messages(
        [
            message_row(
                message_id=ids.question,
                chat_id=ids.chat,
                parent_id=None,
                role=MessageRole.USER,
                content="What is 2 + 2?",
                status=MessageStatus.COMPLETE,
                model=None,
                at=AT,
            ),
            message_row(
                message_id=ids.reply,
                chat_id=ids.chat,
                parent_id=ids.question,
                role=MessageRole.ASSISTANT,
                content="",
                status=MessageStatus.STREAMING,
                model="fake",
                at=AT + timedelta(microseconds=1),
            ),
        ]
    )
    writes.set_current_message(ids.chat, ids.reply, AT)
    seen.append(writes.owned_chat_leaf(ids.chat, ids.user) == (ids.reply,))
    seen.append(writes.message_in_chat(ids.question, ids.chat))
    seen.append(writes.message_in_chat(ids.question, "another chat"))
    handle = TurnHandle(
        turn_id=ids.reply,
        chat_id=ids.chat,
        user_message_id=ids.question,
        assistant_message_id=ids.reply,
        created_chat=True,
    )
    key = turn_key_row(ids.user, "key-1", handle, "d" * 64, AT)
    seen.append(writes.add_turn_key(key))
    seen.append(writes.add_turn_key(key))
    seen.append(writes.branch_history(ids.reply))
    writes.checkpoint([Checkpoint(ids.reply, "Fo", 2)], AT + timedelta(seconds=1))
    # Behind the stored checkpoint: ignored.
    writes.checkpoint([Checkpoint(ids.reply, "F", 1)], AT + timedelta(seconds=2))
    outcome = ReplyOutcome(
        content="Four.",
        status=MessageStatus.COMPLETE,
        finish_reason="eos",
        model="fake",
        prompt_tokens=12,
        completion_tokens=3,
        queue_ms=0.25,
        ttft_ms=1.5,
        total_ms=9.75,
        content_seq=4,
    )
    writes.finish_reply(ids.reply, outcome, AT + timedelta(seconds=3))
    # The reply has ended: ignored.
    writes.checkpoint([Checkpoint(ids.reply, "late", 9)], AT + timedelta(seconds=4))
    for prompt, completion in ((12, 3), (5, 7)):
        writes.add_usage_for_reply(
            ids.reply,
            model="fake",
            day=date(2026, 3, 4),
            prompt_tokens=prompt,
            completion_tokens=completion,
        )
    writes.add_usage_for_reply(
        ids.reply, model="other", day=date(2026, 3, 5), prompt_tokens=1, completion_tokens=0
    )
    return seen


EXPECTED_SEEN = [
    (None,),
    None,
    True,
    True,
    False,
    True,
    False,
    [(MessageRole.USER, "What is 2 + 2?"), (MessageRole.ASSISTANT, "")],
]


async def test_turn_writes_store_a_turn(services: AppServices) -> None:
    ids = Ids.new(await account(services))
    assert await services.transactions.run_writes(lambda w: scenario(w, ids)) == EXPECTED_SEEN
    async with services.sessions() as session:
        chat = await session.get(Chat, ids.chat)
        reply = await session.get(Message, ids.reply)
        key = await session.scalar(select(TurnKey).where(TurnKey.user_id == ids.user))
        usage = (
            await session.scalars(
                select(UsageDaily).where(UsageDaily.user_id == ids.user).order_by(UsageDaily.day)
            )
        ).all()
    assert chat is not None
    assert (chat.current_message_id, chat.title, chat.pinned, chat.archived) == (
        ids.reply,
        "A title",
        False,
        False,
    )
    assert chat.created_at.replace(tzinfo=UTC) == AT
    assert reply is not None
    assert (reply.content, reply.status, reply.content_seq) == ("Four.", "complete", 4)
    assert (reply.queue_ms, reply.ttft_ms, reply.total_ms) == (0.25, 1.5, 9.75)
    assert reply.updated_at.replace(tzinfo=UTC) == AT + timedelta(seconds=3)
    assert key is not None
    assert (key.created_chat, key.assistant_message_id) == (True, ids.reply)
    assert [(u.model, u.day, u.requests, u.prompt_tokens, u.completion_tokens) for u in usage] == [
        ("fake", date(2026, 3, 4), 2, 17, 10),
        ("other", date(2026, 3, 5), 1, 1, 0),
    ]


async def test_a_failed_turn_write_stores_nothing(services: AppServices) -> None:
    ids = Ids.new(await account(services))

    def fail(writes: TurnWrites) -> None:
        writes.add_chat(chat_id=ids.chat, user_id=ids.user, title="gone", at=AT)
        raise ValueError("after the insert")

    with pytest.raises(ValueError, match="after the insert"):
        await services.transactions.run_writes(fail)
    # The writer goes on, and the rolled-back chat is not there.
    assert await services.transactions.run_writes(lambda w: scenario(w, ids)) == EXPECTED_SEEN
    async with services.sessions() as session:
        chat = await session.get(Chat, ids.chat)
    assert chat is not None
    assert chat.title == "A title"


async def test_sqlite_statements_store_what_the_session_statements_store(
    services: AppServices,
) -> None:
    if not services.settings.is_sqlite:
        pytest.skip("compares the SQLite implementation with the Session one")
    by_session = Ids.new(await account(services, "a@example.com"))
    bare = Ids.new(await account(services, "b@example.com"))
    seen_session = await services.transactions.run(
        lambda session: scenario(SessionTurnWrites(session), by_session)
    )
    assert await services.transactions.run_writes(lambda w: scenario(w, bare)) == seen_session
    assert await _stored(services, by_session) == await _stored(services, bare)


async def _stored(services: AppServices, ids: Ids) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the scenario wrote, as stored (text datetimes included), ids replaced."""
    names = {ids.user: "user", ids.chat: "chat", ids.question: "question", ids.reply: "reply"}
    queries = {
        "chat": "SELECT * FROM chat WHERE id = :chat",
        "message": "SELECT * FROM message WHERE chat_id = :chat ORDER BY created_at",
        "turn_key": "SELECT * FROM turn_key WHERE chat_id = :chat",
        "usage_daily": "SELECT * FROM usage_daily WHERE user_id = :user ORDER BY model",
    }
    stored: dict[str, list[tuple[Any, ...]]] = {}
    async with services.sessions() as session:
        for table, query in queries.items():
            rows = await session.execute(text(query), {"chat": ids.chat, "user": ids.user})
            stored[table] = [
                tuple(names.get(v, v) if isinstance(v, str) else v for v in row) for row in rows
            ]
    # turn_key.id is an autoincrement counter.
    stored["turn_key"] = [row[1:] for row in stored["turn_key"]]
    assert all(stored.values())
    return stored


@pytest.mark.parametrize(
    "at",
    [AT, AT.replace(microsecond=5), datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
)
def test_sqlite_datetime_is_sqlalchemys_text(at: datetime) -> None:
    dialect = sqlite.dialect()
    process = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert sqlite_datetime(at) == process(at)
