"""API keys over REST: the secret is returned once, at creation."""

from __future__ import annotations

from fastapi import APIRouter, status

from webui_backend.api.openapi_responses import error_responses
from webui_backend.db.models_admin import ApiKey
from webui_backend.deps import CurrentUser, ServicesDep
from webui_backend.schemas.auth import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyOut
from webui_backend.schemas.events import ErrorResponse

router = APIRouter(prefix="/api/keys", tags=["api keys"])
_ERRORS = error_responses(400, 401, 403, 422)


def _out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)


@router.get("", response_model=ApiKeyList, responses=_ERRORS)
async def list_keys(user: CurrentUser, services: ServicesDep) -> ApiKeyList:
    return ApiKeyList(items=[_out(k) for k in await services.accounts.api_keys.list(user.id)])


@router.post(
    "", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED, responses=_ERRORS
)
async def create_key(body: ApiKeyCreate, user: CurrentUser, services: ServicesDep) -> ApiKeyCreated:
    key, secret = await services.accounts.api_keys.create(
        user.id, name=body.name, expires_at=body.expires_at
    )
    return ApiKeyCreated(**_out(key).model_dump(), secret=secret)


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": ErrorResponse}, **_ERRORS},
)
async def delete_key(key_id: str, user: CurrentUser, services: ServicesDep) -> None:
    await services.accounts.api_keys.delete(user.id, key_id)
