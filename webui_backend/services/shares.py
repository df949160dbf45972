"""Read-only share links: a snapshot of a chat's active branch behind an unguessable id."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models_admin import Share
from webui_backend.db.repositories import ChatRepository, MessageRepository
from webui_backend.db.repositories.shares import ShareRepository
from webui_backend.errors import NotFoundError

_MAX_SHARES_PER_CHAT = 50


class ShareService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, public_url: str) -> None:
        self._sessions = sessions
        self._public_url = public_url.rstrip("/")

    def url_for(self, share_id: str) -> str:
        return f"{self._public_url}/s/{share_id}"

    async def create(self, user_id: str, chat_id: str) -> Share:
        """Snapshot the active branch now; later messages do not appear in the share.
        Raises NotFoundError when the chat is not the user's."""
        async with self._sessions() as session, session.begin():
            chat = await ChatRepository(session).get_owned(chat_id, user_id)
            if chat is None:
                raise NotFoundError("Chat not found.", code="chat_not_found")
            branch = (
                await MessageRepository(session).branch(chat.current_message_id)
                if chat.current_message_id
                else []
            )
            shares = ShareRepository(session)
            existing = await shares.list_for_chat(chat_id, user_id)
            if len(existing) >= _MAX_SHARES_PER_CHAT:
                # Revoking the oldest keeps the count bounded without refusing the user.
                await shares.delete_owned(existing[-1].id, user_id)
            snapshot: list[dict[str, Any]] = [
                {
                    "role": m.role.value,
                    "content": m.content,
                    "model": m.model,
                    "created_at": m.created_at.isoformat(),
                }
                for m in branch
                if m.content
            ]
            # 192 bits from the OS's CSPRNG: not enumerable, not derivable from the chat id.
            return await shares.add(
                share_id=secrets.token_urlsafe(24),
                chat_id=chat.id,
                user_id=user_id,
                title=chat.title,
                snapshot=snapshot,
            )

    async def list_for_chat(self, user_id: str, chat_id: str) -> list[Share]:
        async with self._sessions() as session:
            if await ChatRepository(session).get_owned(chat_id, user_id) is None:
                raise NotFoundError("Chat not found.", code="chat_not_found")
            return await ShareRepository(session).list_for_chat(chat_id, user_id)

    async def revoke(self, user_id: str, share_id: str) -> None:
        async with self._sessions() as session, session.begin():
            if not await ShareRepository(session).delete_owned(share_id, user_id):
                raise NotFoundError("Share not found.", code="share_not_found")

    async def get_public(self, share_id: str) -> Share:
        """Anyone with the id may read the snapshot. Raises NotFoundError once revoked."""
        async with self._sessions() as session:
            share = await ShareRepository(session).get(share_id)
        if share is None:
            raise NotFoundError("Share not found.", code="share_not_found")
        return share
