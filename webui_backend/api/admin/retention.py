"""Reading the retention policy and the last pass (the policy is set by WEBUI_RETENTION_*)."""

from __future__ import annotations

from fastapi import APIRouter

from webui_backend.deps import AdminUser, ServicesDep
from webui_backend.schemas.admin import RetentionOut, RetentionPassOut
from webui_backend.services.retention import RetentionPolicy, last_retention_pass

router = APIRouter(tags=["admin: settings, usage, audit"])


@router.get("/retention", response_model=RetentionOut)
async def retention(admin: AdminUser, services: ServicesDep) -> RetentionOut:
    """The retention settings and the newest pass: chats and messages deleted, and the
    database space given back (SQLite). Passes that deleted chats are also in the audit log
    as `retention.delete`."""
    policy = RetentionPolicy.from_settings(services.settings)
    last = await last_retention_pass(services.sessions)
    return RetentionOut(
        enabled=policy.enabled,
        days=policy.days,
        keep_pinned=policy.keep_pinned,
        interval_s=policy.interval_s,
        batch_size=policy.batch_size,
        last_pass=None if last is None else RetentionPassOut.model_validate(last.to_json()),
    )
