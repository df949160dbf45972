"""Access to `auth_session` rows (browser sessions) and `api_key` rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import User, new_id, utcnow
from webui_backend.db.models_admin import ApiKey, AuthSession


class AuthSessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self, *, user_id: str, token_hash: str, expires_at: datetime, user_agent: str, address: str
    ) -> AuthSession:
        row = AuthSession(
            id=new_id(),
            user_id=user_id,
            token_hash=token_hash,
            created_at=utcnow(),
            expires_at=expires_at,
            user_agent=user_agent[:300],
            address=address[:64],
        )
        self._session.add(row)
        await self._session.flush()
        return row

    async def find_live(self, token_hash: str, now: datetime) -> tuple[AuthSession, User] | None:
        result = await self._session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_hash == token_hash, AuthSession.expires_at > now)
        )
        row = result.one_or_none()
        return (row[0], row[1]) if row is not None else None

    async def delete(self, session_id: str) -> None:
        await self._session.execute(delete(AuthSession).where(AuthSession.id == session_id))

    async def delete_for_user(self, user_id: str, *, except_id: str | None = None) -> None:
        stmt = delete(AuthSession).where(AuthSession.user_id == user_id)
        if except_id is not None:
            stmt = stmt.where(AuthSession.id != except_id)
        await self._session.execute(stmt)

    async def delete_expired(self, now: datetime) -> None:
        await self._session.execute(delete(AuthSession).where(AuthSession.expires_at <= now))


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self,
        *,
        user_id: str,
        name: str,
        prefix: str,
        key_hash: str,
        expires_at: datetime | None,
    ) -> ApiKey:
        row = ApiKey(
            id=new_id(),
            user_id=user_id,
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        self._session.add(row)
        await self._session.flush()
        return row

    async def list_owned(self, user_id: str) -> list[ApiKey]:
        result = await self._session.execute(
            select(ApiKey)
            .where(ApiKey.user_id == user_id)
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
        )
        return list(result.scalars())

    async def find_by_hash(self, key_hash: str) -> tuple[ApiKey, User] | None:
        result = await self._session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == key_hash)
        )
        row = result.one_or_none()
        return (row[0], row[1]) if row is not None else None

    async def touch(self, key_id: str, at: datetime) -> None:
        await self._session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at)
        )

    async def delete_owned(self, key_id: str, user_id: str) -> bool:
        result = await self._session.execute(
            delete(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def delete_for_user(self, user_id: str) -> None:
        await self._session.execute(delete(ApiKey).where(ApiKey.user_id == user_id))
