"""Listing, searching and tagging chats: the queries behind the sidebar.

The list is keyset-paginated on (pinned, updated_at, id), all descending, which the
`ix_chat_list` index serves directly; a page costs the same at any depth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, and_, delete, exists, func, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import Chat
from webui_backend.db.models_admin import ChatTag


@dataclass(frozen=True, slots=True)
class ChatCursor:
    """Position after the last chat of a page."""

    pinned: bool
    updated_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    chat_id: str
    title: str
    updated_at: datetime
    message_id: str | None
    snippet: str


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

    async def search(self, user_id: str, fts_query: str, *, limit: int) -> list[SearchHit]:
        """Full-text matches in the user's chat titles and messages, newest first.

        Newest-first lets SQLite stop after `limit` rows even for a word that occurs in
        half a million messages; ranking by relevance would score every match first."""
        if self._session.get_bind().dialect.name != "sqlite":
            return await self._search_like(user_id, fts_query, limit=limit)
        result = await self._session.execute(
            text(
                "SELECT s.chat_id, c.title, c.updated_at, s.message_id, "
                "snippet(chat_search, 0, '[', ']', '…', 12) AS snippet "
                "FROM chat_search AS s JOIN chat AS c ON c.id = s.chat_id "
                "WHERE chat_search MATCH :q AND c.user_id = :user_id "
                "ORDER BY s.rowid DESC LIMIT :limit"
            ).columns(updated_at=DateTime(timezone=True)),
            {
                # The owner's token narrows the match inside the index (see migration 0002);
                # the join re-checks ownership.
                "q": f'({{body}} : ({fts_query})) AND (keys : "u{user_id.replace("-", "")}")',
                "user_id": user_id,
                "limit": limit,
            },
        )
        return [
            SearchHit(
                chat_id=row.chat_id,
                title=row.title,
                updated_at=row.updated_at,
                message_id=row.message_id,
                snippet=row.snippet,
            )
            for row in result
        ]

    async def _search_like(self, user_id: str, fts_query: str, *, limit: int) -> list[SearchHit]:
        # Portable fallback until the PostgreSQL tsvector index lands: titles only.
        words = [w.strip('"') for w in fts_query.split() if w not in ("AND", "OR", "NOT")]
        stmt = select(Chat).where(Chat.user_id == user_id)
        for word in words:
            stmt = stmt.where(Chat.title.ilike(f"%{word.rstrip('*')}%"))
        chats = (await self._session.execute(stmt.limit(limit))).scalars()
        return [SearchHit(c.id, c.title, c.updated_at, None, c.title) for c in chats]
