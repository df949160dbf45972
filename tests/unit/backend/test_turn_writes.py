"""The turn's own transactions (db/transactions.py + turn_writes.py) on a real database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.databases import database_url
from tests.unit.backend.test_turn_streams import watch_all
from webui_backend.container import AppServices
from webui_backend.db.models import Chat, Message, MessageStatus
from webui_backend.errors import NotFoundError
from webui_backend.services.new_turn import TurnRequest
from webui_backend.services.turn_events import TurnFinished
from webui_backend.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data_dir = tmp_path / "data"
    # No per-user message rate limit: the point is many sends at once.
    return Settings(
        data_dir=data_dir, database_url=database_url(data_dir), chat_messages_per_minute=0
    )


async def test_many_simultaneous_turns_are_all_stored(services: AppServices, user_id: str) -> None:
    """128 sends at once, while another writer renames chats through the async session: all
    land (this used to fail with `database is locked` once turns raced for SQLite's lock)."""
    first = await services.turns.start_turn(user_id, TurnRequest(content="seed"))
    await watch_all(services, user_id, first.turn_id)

    async def rename_repeatedly() -> None:
        for i in range(20):
            async with services.sessions() as session, session.begin():
                chat = await session.get(Chat, first.chat_id)
                assert chat is not None
                chat.title = f"renamed {i}"

    handles, _ = await asyncio.gather(
        asyncio.gather(
            *(
                services.turns.start_turn(user_id, TurnRequest(content=f"question {i}"))
                for i in range(128)
            )
        ),
        rename_repeatedly(),
    )
    finished = await asyncio.gather(*(watch_all(services, user_id, h.turn_id) for h in handles))
    assert all(type(events[-1]) is TurnFinished for events in finished)
    async with services.sessions() as session:
        complete = await session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.status == MessageStatus.COMPLETE, Message.role == "assistant")
        )
    assert complete == 129


async def test_follow_up_sees_the_branch_and_a_foreign_chat_stores_nothing(
    services: AppServices, user_id: str
) -> None:
    first = await services.turns.start_turn(user_id, TurnRequest(content="one"))
    await watch_all(services, user_id, first.turn_id)
    second = await services.turns.start_turn(
        user_id, TurnRequest(content="two", chat_id=first.chat_id)
    )
    await watch_all(services, user_id, second.turn_id)
    async with services.sessions() as session:
        user_msg = await session.get(Message, second.user_message_id)
        assert user_msg is not None
        assert user_msg.parent_id == first.assistant_message_id
        chat = await session.get(Chat, first.chat_id)
        assert chat is not None
        assert chat.current_message_id == second.assistant_message_id
        before = await session.scalar(select(func.count()).select_from(Message))

    other = await services.auth.register(
        email="other@example.com", password="correct horse 2", name="Other"
    )
    with pytest.raises(NotFoundError) as refused:
        await services.turns.start_turn(
            other.id, TurnRequest(content="sneaky", chat_id=first.chat_id)
        )
    assert refused.value.code == "chat_not_found"
    async with services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == before
