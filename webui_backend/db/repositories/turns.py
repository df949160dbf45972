"""SQL for turn bookkeeping: idempotent turn keys, finding and reopening a reply (the writes
of a turn itself are in `turn_writes`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import Chat, Message, MessageRole, MessageStatus, utcnow
from webui_backend.db.models_turns import TurnKey
from webui_backend.db.repositories.turn_writes import turn_key_insert


@dataclass(frozen=True, slots=True)
class StoredReply:
    """An assistant reply as stored, with its owner, for resume and continue."""

    message: Message
    user_id: str


class TurnRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_reply(self, message_id: str) -> StoredReply | None:
        result = await self._session.execute(
            select(Message, Chat.user_id)
            .join(Chat, Chat.id == Message.chat_id)
            .where(Message.id == message_id, Message.role == MessageRole.ASSISTANT)
        )
        row = result.one_or_none()
        return None if row is None else StoredReply(row[0], row[1])

    async def reopen_reply(self, message_id: str, reopenable: Sequence[MessageStatus]) -> bool:
        """Set a finished reply back to `streaming` to generate more into it; False when it
        is not in one of `reopenable` (e.g. another request reopened it first)."""
        result = await self._session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status.in_(list(reopenable)))
            .values(status=MessageStatus.STREAMING, error=None, updated_at=utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def find_key(self, user_id: str, key: str) -> TurnKey | None:
        result = await self._session.execute(
            select(TurnKey).where(TurnKey.user_id == user_id, TurnKey.key == key)
        )
        return result.scalar_one_or_none()

    async def add_key(self, row: dict[str, Any]) -> bool:
        """Insert a turn key (see `turn_key_row`); False if (user, key) already exists. The
        same ON CONFLICT statement as a new turn's (TurnWrites.add_turn_key)."""
        dialect = self._session.get_bind().dialect.name
        result = await self._session.execute(turn_key_insert(dialect), row)
        return bool(result.rowcount)  # type: ignore[attr-defined]
