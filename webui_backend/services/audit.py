"""The audit log of administrators' actions, written in the same transaction as the action."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models_admin import AuditLog
from webui_backend.db.repositories.admin import AuditRepository
from webui_backend.services.principal import AuthenticatedUser


def record(
    session: AsyncSession,
    actor: AuthenticatedUser,
    action: str,
    *,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    AuditRepository(session).add(
        actor_id=actor.id,
        actor_email=actor.email,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
    )


class AuditService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def page(
        self, *, limit: int, before: datetime | None = None, action: str | None = None
    ) -> list[AuditLog]:
        async with self._sessions() as session:
            return await AuditRepository(session).page(limit=limit, before=before, action=action)
