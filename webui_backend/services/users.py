"""Administering accounts: list and search, change role, disable, delete (with their chats)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import User, UserRole, utcnow
from webui_backend.db.repositories import UserRepository
from webui_backend.db.repositories.auth_sessions import ApiKeyRepository, AuthSessionRepository
from webui_backend.errors import ConflictError, NotFoundError
from webui_backend.services.audit import record
from webui_backend.services.principal import AuthenticatedUser
from webui_backend.services.principal_cache import PrincipalCache


class UserAdminService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], principals: PrincipalCache | None = None
    ) -> None:
        self._sessions = sessions
        # The auth cache: every change here must end cached access at once.
        self._principals = principals or PrincipalCache()

    async def search(
        self, *, query: str, role: UserRole | None, limit: int, offset: int
    ) -> tuple[list[User], int]:
        async with self._sessions() as session:
            return await UserRepository(session).search(
                query=query, role=role, limit=limit, offset=offset
            )

    async def get(self, user_id: str) -> User:
        async with self._sessions() as session:
            return await _existing(UserRepository(session), user_id)

    async def set_role(self, actor: AuthenticatedUser, user_id: str, role: UserRole) -> User:
        """Raises NotFoundError, or ConflictError when it would leave no active admin."""
        async with self._sessions() as session, session.begin():
            users = UserRepository(session)
            user = await _existing(users, user_id)
            if user.role is UserRole.ADMIN and role is not UserRole.ADMIN:
                await _keep_an_admin(users, user)
            previous = user.role
            await users.set_role(user_id, role)
            record(
                session,
                actor,
                "user.role",
                target_type="user",
                target_id=user_id,
                details={"from": previous.value, "to": role.value, "email": user.email},
            )
        self._principals.forget_user(user_id)
        return await self.get(user_id)

    async def set_disabled(self, actor: AuthenticatedUser, user_id: str, disabled: bool) -> User:
        """Disabling ends the account's sessions and deletes its API keys in the same
        transaction; its access tokens stop working at once (token version bump)."""
        async with self._sessions() as session, session.begin():
            users = UserRepository(session)
            user = await _existing(users, user_id)
            if disabled and user.id == actor.id:
                raise ConflictError("You cannot disable your own account.", code="self_action")
            if disabled and user.role is UserRole.ADMIN:
                await _keep_an_admin(users, user)
            await users.set_disabled(user_id, utcnow() if disabled else None)
            if disabled:
                await AuthSessionRepository(session).delete_for_user(user_id)
                await ApiKeyRepository(session).delete_for_user(user_id)
            record(
                session,
                actor,
                "user.disable" if disabled else "user.enable",
                target_type="user",
                target_id=user_id,
                details={"email": user.email},
            )
        self._principals.forget_user(user_id)
        return await self.get(user_id)

    async def delete(self, actor: AuthenticatedUser, user_id: str) -> None:
        """Delete the account with its chats, messages, shares, keys and sessions."""
        async with self._sessions() as session, session.begin():
            users = UserRepository(session)
            user = await _existing(users, user_id)
            if user.id == actor.id:
                raise ConflictError("You cannot delete your own account.", code="self_action")
            if user.role is UserRole.ADMIN:
                await _keep_an_admin(users, user)
            await users.delete(user_id)
            record(
                session,
                actor,
                "user.delete",
                target_type="user",
                target_id=user_id,
                details={"email": user.email},
            )
        self._principals.forget_user(user_id)


async def _existing(users: UserRepository, user_id: str) -> User:
    user = await users.get(user_id)
    if user is None:
        raise NotFoundError("User not found.", code="user_not_found")
    return user


async def _keep_an_admin(users: UserRepository, user: User) -> None:
    if user.disabled_at is None and await users.count_active_admins() <= 1:
        raise ConflictError("This is the last active administrator.", code="last_admin")
