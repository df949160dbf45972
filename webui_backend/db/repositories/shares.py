"""Access to `share` rows: read-only snapshots behind unguessable ids."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import utcnow
from webui_backend.db.models_admin import Share


class ShareRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self,
        *,
        share_id: str,
        chat_id: str,
        user_id: str,
        title: str,
        snapshot: list[dict[str, Any]],
    ) -> Share:
        row = Share(
            id=share_id,
            chat_id=chat_id,
            user_id=user_id,
            title=title,
            snapshot=snapshot,
            created_at=utcnow(),
        )
        self._session.add(row)
        await self._session.flush()
        return row

    async def get(self, share_id: str) -> Share | None:
        return await self._session.get(Share, share_id)

    async def list_for_chat(self, chat_id: str, user_id: str) -> list[Share]:
        result = await self._session.execute(
            select(Share)
            .where(Share.chat_id == chat_id, Share.user_id == user_id)
            .order_by(Share.created_at.desc())
        )
        return list(result.scalars())

    async def delete_owned(self, share_id: str, user_id: str) -> bool:
        result = await self._session.execute(
            delete(Share).where(Share.id == share_id, Share.user_id == user_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
