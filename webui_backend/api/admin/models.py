"""Administering models: enabled, display name, defaults, system prompt, who may use them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from webui_backend.api.models import model_out
from webui_backend.deps import AdminUser, ServicesDep
from webui_backend.schemas.admin import AdminModelList, AdminModelOut, AdminModelPatch
from webui_backend.schemas.events import ErrorResponse
from webui_backend.services.admin_models import ModelView

router = APIRouter(prefix="/models", tags=["admin: models"])


def admin_model_out(view: ModelView) -> AdminModelOut:
    return AdminModelOut(
        **model_out(view).model_dump(),
        allowed_roles=view.allowed_roles,
        allowed_user_ids=view.allowed_user_ids,
    )


@router.get("", response_model=AdminModelList)
async def list_models(admin: AdminUser, services: ServicesDep) -> AdminModelList:
    """Every model a runner offers or that has settings, enabled or not."""
    views = await services.accounts.model_access.list_all()
    return AdminModelList(items=[admin_model_out(v) for v in views])


@router.patch(
    "/{model_id:path}", response_model=AdminModelOut, responses={422: {"model": ErrorResponse}}
)
async def update_model(
    model_id: Annotated[str, Path(max_length=200)],
    body: AdminModelPatch,
    admin: AdminUser,
    services: ServicesDep,
) -> AdminModelOut:
    """Only the fields sent change. Empty `allowed_roles` and `allowed_user_ids` = every
    active user; admins may always use every model."""
    changes = body.model_dump(exclude_unset=True)
    if body.params is not None:
        changes["params"] = body.params.model_dump(exclude_none=True)
    view = await services.accounts.model_access.update(admin, model_id, changes)
    return admin_model_out(view)
