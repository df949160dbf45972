"""Access to `user` rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import User, UserRole, new_id, utcnow


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, user_id: str) -> User | None:
        return await self._session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        result = await self._session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()

    async def count(self) -> int:
        return (await self._session.execute(select(func.count()).select_from(User))).scalar_one()

    async def count_active_admins(self) -> int:
        stmt = (
            select(func.count())
            .select_from(User)
            .where(User.role == UserRole.ADMIN, User.disabled_at.is_(None))
        )
        return (await self._session.execute(stmt)).scalar_one()

    async def add(
        self, *, email: str, name: str, role: UserRole, password_hash: str | None = None
    ) -> User:
        user = User(
            id=new_id(),
            email=email.lower(),
            name=name,
            role=role,
            password_hash=password_hash,
            created_at=utcnow(),
            token_version=0,
        )
        self._session.add(user)
        await self._session.flush()
        return user

    async def search(
        self, *, query: str = "", role: UserRole | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[User], int]:
        """Users whose email or name contains `query`, oldest first, and the total count."""
        conditions = []
        if query:
            pattern = f"%{query.lower().replace('%', '').replace('_', '')}%"
            conditions.append(or_(User.email.like(pattern), func.lower(User.name).like(pattern)))
        if role is not None:
            conditions.append(User.role == role)
        total = (
            await self._session.execute(select(func.count()).select_from(User).where(*conditions))
        ).scalar_one()
        result = await self._session.execute(
            select(User)
            .where(*conditions)
            .order_by(User.created_at, User.id)
            .limit(limit)
            .offset(offset)
        )
        return list(result.scalars()), total

    async def set_role(self, user_id: str, role: UserRole) -> None:
        await self._session.execute(update(User).where(User.id == user_id).values(role=role))

    async def set_disabled(self, user_id: str, disabled_at: datetime | None) -> None:
        """Disable (or enable) an account; bumping the token version voids its access tokens."""
        await self._session.execute(
            update(User)
            .where(User.id == user_id)
            .values(disabled_at=disabled_at, token_version=User.token_version + 1)
        )

    async def set_password(self, user_id: str, password_hash: str) -> None:
        await self._session.execute(
            update(User)
            .where(User.id == user_id)
            .values(password_hash=password_hash, token_version=User.token_version + 1)
        )

    async def record_login(self, user_id: str) -> None:
        await self._session.execute(
            update(User).where(User.id == user_id).values(last_login_at=utcnow())
        )

    async def delete(self, user_id: str) -> None:
        await self._session.execute(delete(User).where(User.id == user_id))
