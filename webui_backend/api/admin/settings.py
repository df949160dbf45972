"""Administering runtime settings, and reading usage and the audit log."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from webui_backend.deps import AdminUser, ServicesDep
from webui_backend.schemas.admin import (
    AuditEntryOut,
    AuditList,
    SettingsOut,
    SettingsPatch,
    UsageOut,
    UsageRowOut,
)
from webui_backend.schemas.events import ErrorResponse
from webui_backend.services.settings_store import SettingsAdmin

router = APIRouter(tags=["admin: settings, usage, audit"])


@router.get("/settings", response_model=SettingsOut)
async def get_settings(admin: AdminUser, services: ServicesDep) -> SettingsOut:
    current = services.accounts.settings_store.current
    return SettingsOut(**current.model_dump())


@router.patch("/settings", response_model=SettingsOut, responses={422: {"model": ErrorResponse}})
async def update_settings(
    body: SettingsPatch, admin: AdminUser, services: ServicesDep
) -> SettingsOut:
    """Stored in the database; they win over the WEBUI_* environment defaults from now on."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    store = services.accounts.settings_store
    updated = await SettingsAdmin(services.sessions, store).change(admin, changes)
    return SettingsOut(**updated.model_dump())


@router.get("/usage", response_model=UsageOut, responses={400: {"model": ErrorResponse}})
async def usage(
    admin: AdminUser,
    services: ServicesDep,
    start: date | None = None,
    end: date | None = None,
    user_id: str | None = None,
    model: str | None = None,
) -> UsageOut:
    """Tokens per user, model and UTC day; default range: the last 30 days."""
    rows = await services.accounts.usage.query(start=start, end=end, user_id=user_id, model=model)
    items = [
        UsageRowOut(
            day=r.day,
            user_id=r.user_id,
            email=r.email,
            model=r.model,
            requests=r.requests,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
        )
        for r in rows
    ]
    resolved_start, resolved_end = services.accounts.usage.resolve_range(start, end)
    return UsageOut(start=resolved_start, end=resolved_end, items=items)


@router.get("/audit", response_model=AuditList)
async def audit_log(
    admin: AdminUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: datetime | None = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditList:
    """Newest first; pass `next_before` back as `before` for older entries."""
    entries = await services.accounts.audit.page(limit=limit, before=before, action=action)
    return AuditList(
        items=[AuditEntryOut.model_validate(e, from_attributes=True) for e in entries],
        next_before=entries[-1].created_at if len(entries) == limit else None,
    )
