"""Access to `chat` rows. Every read takes the owner, so a foreign chat is simply absent."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, Update, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import Chat, new_id, utcnow


class ChatRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_owned(self, chat_id: str, user_id: str) -> Chat | None:
        result = await self._session.execute(
            _owned_statement(), {"o_chat": chat_id, "o_user": user_id}
        )
        return result.scalar_one_or_none()

    async def list_owned(self, user_id: str, *, limit: int = 50) -> list[Chat]:
        result = await self._session.execute(
            select(Chat)
            .where(Chat.user_id == user_id)
            .order_by(Chat.updated_at.desc(), Chat.id.desc())
            .limit(limit)
        )
        return list(result.scalars())

    async def add(self, *, user_id: str, title: str = "") -> Chat:
        now = utcnow()
        chat = Chat(id=new_id(), user_id=user_id, title=title, created_at=now, updated_at=now)
        self._session.add(chat)
        await self._session.flush()
        return chat

    async def set_current_message(
        self, chat_id: str, message_id: str, *, at: datetime | None = None
    ) -> None:
        await self._session.execute(
            _current_message_statement(),
            {"c_id": chat_id, "c_message": message_id, "c_now": at or utcnow()},
        )

    async def update_fields(self, chat_id: str, **values: Any) -> None:
        """Change title, pinned, archived or current_message_id; updated_at is left alone
        (it means "last activity", which orders the list)."""
        await self._session.execute(update(Chat).where(Chat.id == chat_id).values(**values))

    async def delete_owned(self, chat_id: str, user_id: str) -> bool:
        result = await self._session.execute(
            delete(Chat).where(Chat.id == chat_id, Chat.user_id == user_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def replace_title(self, chat_id: str, expected: str, title: str) -> bool:
        """Set the title only if it is still `expected` (the user did not rename meanwhile)."""
        result = await self._session.execute(
            update(Chat).where(Chat.id == chat_id, Chat.title == expected).values(title=title)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


# Built once: every chat turn runs both, and building a statement cost about as much CPU as
# executing it.
@functools.cache
def _owned_statement() -> Select[Chat]:
    return select(Chat).where(Chat.id == bindparam("o_chat"), Chat.user_id == bindparam("o_user"))


@functools.cache
def _current_message_statement() -> Update:
    table = cast(Table, Chat.__table__)
    return (
        update(table)
        .where(table.c.id == bindparam("c_id"))
        .values(current_message_id=bindparam("c_message"), updated_at=bindparam("c_now"))
    )
