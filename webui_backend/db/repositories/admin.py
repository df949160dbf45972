"""Access to the administration tables: settings, model configuration, runners, usage, audit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    delete,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import User, new_id, utcnow
from webui_backend.db.models_admin import (
    AppSetting,
    AuditLog,
    ModelConfig,
    RunnerRecord,
    UsageDaily,
)


class AppSettingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def all(self) -> dict[str, Any]:
        result = await self._session.execute(select(AppSetting.key, AppSetting.value))
        return {str(key): value for key, value in result}

    async def put(self, key: str, value: Any) -> None:
        row = await self._session.get(AppSetting, key)
        if row is None:
            self._session.add(AppSetting(key=key, value=value, updated_at=utcnow()))
        else:
            row.value = value
            row.updated_at = utcnow()
        await self._session.flush()

    async def exists(self, key: str) -> bool:
        return await self._session.get(AppSetting, key) is not None

    async def add_new(self, key: str, value: Any) -> None:
        """Insert `key`; raises IntegrityError (at this flush, or at commit) if another
        transaction holds it already: the primary key makes it a once-only marker."""
        self._session.add(AppSetting(key=key, value=value, updated_at=utcnow()))
        await self._session.flush()


class ModelConfigRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def all(self) -> dict[str, ModelConfig]:
        result = await self._session.execute(select(ModelConfig))
        return {row.model_id: row for row in result.scalars()}

    async def get(self, model_id: str) -> ModelConfig | None:
        return await self._session.get(ModelConfig, model_id)

    async def upsert(self, model_id: str, values: dict[str, Any]) -> ModelConfig:
        row = await self._session.get(ModelConfig, model_id)
        if row is None:
            row = ModelConfig(
                model_id=model_id,
                enabled=True,
                display_name="",
                params={},
                system_prompt="",
                allowed_roles=[],
                allowed_user_ids=[],
            )
            self._session.add(row)
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        await self._session.flush()
        return row


class RunnerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list(self) -> list[RunnerRecord]:
        result = await self._session.execute(
            select(RunnerRecord).order_by(RunnerRecord.created_at, RunnerRecord.id)
        )
        return list(result.scalars())

    async def get(self, runner_id: str) -> RunnerRecord | None:
        return await self._session.get(RunnerRecord, runner_id)

    async def get_by_address(self, address: str) -> RunnerRecord | None:
        result = await self._session.execute(
            select(RunnerRecord).where(RunnerRecord.address == address)
        )
        return result.scalar_one_or_none()

    async def add(self, *, name: str, address: str) -> RunnerRecord:
        row = RunnerRecord(id=new_id(), name=name, address=address, created_at=utcnow())
        self._session.add(row)
        await self._session.flush()
        return row

    async def delete(self, runner_id: str) -> None:
        await self._session.execute(delete(RunnerRecord).where(RunnerRecord.id == runner_id))


class UsageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def query(
        self,
        *,
        start: date,
        end: date,
        user_id: str | None = None,
        model: str | None = None,
    ) -> list[tuple[UsageDaily, str]]:
        stmt = (
            select(UsageDaily, User.email)
            .join(User, User.id == UsageDaily.user_id)
            .where(UsageDaily.day >= start, UsageDaily.day <= end)
            .order_by(UsageDaily.day.desc(), User.email, UsageDaily.model)
        )
        if user_id is not None:
            stmt = stmt.where(UsageDaily.user_id == user_id)
        if model is not None:
            stmt = stmt.where(UsageDaily.model == model)
        return [(row[0], row[1]) for row in await self._session.execute(stmt)]


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def add(
        self,
        *,
        actor_id: str | None,
        actor_email: str,
        action: str,
        target_type: str,
        target_id: str,
        details: dict[str, Any],
    ) -> None:
        self._session.add(
            AuditLog(
                id=new_id(),
                actor_id=actor_id,
                actor_email=actor_email,
                action=action,
                target_type=target_type,
                target_id=target_id,
                details=details,
                created_at=utcnow(),
            )
        )

    async def page(
        self, *, limit: int, before: datetime | None, action: str | None
    ) -> list[AuditLog]:
        stmt = select(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
        if before is not None:
            stmt = stmt.where(AuditLog.created_at < before)
        if action is not None:
            stmt = stmt.where(AuditLog.action == action)
        return list((await self._session.execute(stmt.limit(limit))).scalars())

    async def count(self) -> int:
        return (
            await self._session.execute(select(func.count()).select_from(AuditLog))
        ).scalar_one()
