"""The models this user may use, with display names and default parameters."""

from __future__ import annotations

from fastapi import APIRouter

from webui_backend.deps import CurrentUser, ServicesDep
from webui_backend.schemas.admin import ModelOut, UserModelList
from webui_backend.schemas.events import ErrorResponse
from webui_backend.services.admin_models import ModelView

router = APIRouter(prefix="/api/models", tags=["models"])


def model_out(view: ModelView) -> ModelOut:
    return ModelOut(
        id=view.id,
        display_name=view.display_name,
        enabled=view.enabled,
        available=view.available,
        state=view.state,
        is_default=view.is_default,
        max_context_tokens=view.max_context_tokens,
        params=view.params,
        system_prompt=view.system_prompt,
    )


@router.get(
    "",
    response_model=UserModelList,
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)
async def list_models(user: CurrentUser, services: ServicesDep) -> UserModelList:
    views = await services.accounts.model_access.list_for_user(user.id, user.role)
    return UserModelList(items=[model_out(v) for v in views])
