"""Settings an administrator changes at runtime, kept in the `app_setting` table.

Environment variables (Settings) are the first-boot defaults; a value stored in the database
wins. Reads come from memory: this process is the only writer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.repositories.admin import AppSettingRepository
from webui_backend.services.audit import record
from webui_backend.services.principal import AuthenticatedUser
from webui_backend.settings import Settings


class RuntimeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signup_enabled: bool
    default_role: Literal["pending", "user"]
    chat_messages_per_minute: int = Field(ge=0, le=10_000)
    login_attempts_per_account_per_minute: int = Field(ge=0, le=10_000)
    login_attempts_per_address_per_minute: int = Field(ge=0, le=10_000)
    title_generation: bool


def defaults_from(settings: Settings) -> RuntimeSettings:
    return RuntimeSettings(
        signup_enabled=settings.signup_enabled,
        default_role=settings.default_role,
        chat_messages_per_minute=settings.chat_messages_per_minute,
        login_attempts_per_account_per_minute=settings.login_attempts_per_account_per_minute,
        login_attempts_per_address_per_minute=settings.login_attempts_per_address_per_minute,
        title_generation=settings.title_generation,
    )


class SettingsStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], defaults: RuntimeSettings):
        self._sessions = sessions
        self._defaults = defaults
        self._current = defaults

    @property
    def current(self) -> RuntimeSettings:
        return self._current

    async def load(self) -> RuntimeSettings:
        async with self._sessions() as session:
            stored = await AppSettingRepository(session).all()
        merged = self._defaults.model_dump()
        merged.update({k: v for k, v in stored.items() if k in merged})
        self._current = RuntimeSettings.model_validate(merged)
        return self._current

    async def update(self, changes: dict[str, Any], session: AsyncSession) -> RuntimeSettings:
        """Validate and store `changes` in the caller's transaction; the caller commits, then
        calls `adopt` with the result."""
        merged = {**self._current.model_dump(), **changes}
        updated = RuntimeSettings.model_validate(merged)
        repo = AppSettingRepository(session)
        for key in changes:
            await repo.put(key, getattr(updated, key))
        return updated

    def adopt(self, updated: RuntimeSettings) -> None:
        self._current = updated


class SettingsAdmin:
    """Changing the runtime settings: stored, audited, then in effect at once."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: SettingsStore) -> None:
        self._sessions = sessions
        self._store = store

    async def change(self, actor: AuthenticatedUser, changes: dict[str, Any]) -> RuntimeSettings:
        async with self._sessions() as session, session.begin():
            updated = await self._store.update(changes, session)
            record(session, actor, "settings.update", target_type="settings", details=changes)
        self._store.adopt(updated)
        return updated
