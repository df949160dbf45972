"""Listing and tagging chats: the queries behind the sidebar (search: chat_search.py).

The list is keyset-paginated on (pinned, updated_at, id), all descending, which the
`ix_chat_list` index serves directly; a page costs the same at any depth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import Chat
from webui_backend.db.models_admin import ChatTag


@dataclass(frozen=True, slots=True)
class ChatCursor:
    """Position after the last chat of a page."""

    pinned: bool
    updated_at: datetime
    id: str


class ChatListingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def page(
        self,
        user_id: str,
        *,
        archived: bool,
        pinned: bool | None,
        tag: str | None,
        after: ChatCursor | None,
        limit: int,
    ) -> list[Chat]:
        stmt = select(Chat).where(Chat.user_id == user_id, Chat.archived == archived)
        if pinned is not None:
            stmt = stmt.where(Chat.pinned == pinned)
        if tag is not None:
            stmt = stmt.where(
                exists().where(ChatTag.chat_id == Chat.id, ChatTag.name == tag.lower())
            )
        if after is not None:
            same_pin = and_(
                Chat.pinned.is_(after.pinned),
                or_(
                    Chat.updated_at < after.updated_at,
                    and_(Chat.updated_at == after.updated_at, Chat.id < after.id),
                ),
            )
            # After the last pinned chat come all unpinned ones.
            stmt = stmt.where(or_(Chat.pinned.is_(False), same_pin) if after.pinned else same_pin)
        stmt = stmt.order_by(Chat.pinned.desc(), Chat.updated_at.desc(), Chat.id.desc()).limit(
            limit
        )
        return list((await self._session.execute(stmt)).scalars())

    async def tags_of(self, chat_ids: Sequence[str]) -> dict[str, list[str]]:
        if not chat_ids:
            return {}
        result = await self._session.execute(
            select(ChatTag.chat_id, ChatTag.name)
            .where(ChatTag.chat_id.in_(list(chat_ids)))
            .order_by(ChatTag.name)
        )
        tags: dict[str, list[str]] = defaultdict(list)
        for chat_id, name in result:
            tags[chat_id].append(name)
        return dict(tags)

    async def set_tags(self, chat_id: str, names: Sequence[str]) -> None:
        await self._session.execute(delete(ChatTag).where(ChatTag.chat_id == chat_id))
        if names:
            await self._session.execute(
                insert(ChatTag), [{"chat_id": chat_id, "name": n} for n in names]
            )

    async def user_tags(self, user_id: str) -> list[tuple[str, int]]:
        """Every tag of the user's chats with the number of chats carrying it."""
        result = await self._session.execute(
            select(ChatTag.name, func.count())
            .join(Chat, Chat.id == ChatTag.chat_id)
            .where(Chat.user_id == user_id)
            .group_by(ChatTag.name)
            .order_by(ChatTag.name)
        )
        return [(name, int(count)) for name, count in result]
