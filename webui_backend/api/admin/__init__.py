"""`/api/admin`: administrators only (every route depends on AdminUser)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from webui_backend.api.admin import models, retention, runners, settings, users
from webui_backend.api.openapi_responses import error_responses
from webui_backend.deps import get_admin_user

router = APIRouter(
    prefix="/api/admin",
    dependencies=[Depends(get_admin_user)],
    responses=error_responses(401, 403),
)
router.include_router(users.router)
router.include_router(models.router)
router.include_router(runners.router)
router.include_router(settings.router)
router.include_router(retention.router)

__all__ = ["router"]
