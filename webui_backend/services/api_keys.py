"""API keys: many per user, the secret shown once, only its hash stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import utcnow
from webui_backend.db.models_admin import ApiKey
from webui_backend.db.repositories.auth_sessions import ApiKeyRepository
from webui_backend.errors import InvalidInputError, NotFoundError
from webui_backend.services.auth_crypto import digest, new_api_key
from webui_backend.services.principal_cache import PrincipalCache

_MAX_KEYS_PER_USER = 100


class ApiKeyService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], principals: PrincipalCache
    ) -> None:
        self._sessions = sessions
        # The account behind a key is cached like an access token's (AuthService); a deleted
        # key must stop working here at once.
        self._principals = principals

    async def create(
        self, user_id: str, *, name: str, expires_at: datetime | None
    ) -> tuple[ApiKey, str]:
        """Returns the stored key and its secret (never retrievable again)."""
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidInputError("expires_at is in the past.", code="invalid_expiry")
        secret, prefix = new_api_key()
        async with self._sessions() as session, session.begin():
            keys = ApiKeyRepository(session)
            if len(await keys.list_owned(user_id)) >= _MAX_KEYS_PER_USER:
                raise InvalidInputError(
                    f"An account may hold at most {_MAX_KEYS_PER_USER} API keys.",
                    code="too_many_keys",
                )
            row = await keys.add(
                user_id=user_id,
                name=name.strip(),
                prefix=prefix,
                key_hash=digest(secret),
                expires_at=expires_at,
            )
        return row, secret

    async def list(self, user_id: str) -> list[ApiKey]:
        async with self._sessions() as session:
            return await ApiKeyRepository(session).list_owned(user_id)

    async def delete(self, user_id: str, key_id: str) -> None:
        async with self._sessions() as session, session.begin():
            if not await ApiKeyRepository(session).delete_owned(key_id, user_id):
                raise NotFoundError("API key not found.", code="api_key_not_found")
        self._principals.forget_user(user_id)
