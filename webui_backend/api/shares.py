"""Share links: revoke one, and read a snapshot (public: the id is the credential)."""

from __future__ import annotations

from fastapi import APIRouter, status

from webui_backend.deps import CurrentUser, ServicesDep
from webui_backend.schemas.chats import SharedChatOut, SharedMessageOut
from webui_backend.schemas.events import ErrorResponse

router = APIRouter(prefix="/api/shares", tags=["shares"])
_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorResponse}}


@router.get(
    "/{share_id}",
    response_model=SharedChatOut,
    responses=_NOT_FOUND,
    summary="Public: the read-only snapshot behind a share link",
)
async def get_share(share_id: str, services: ServicesDep) -> SharedChatOut:
    share = await services.accounts.shares.get_public(share_id)
    return SharedChatOut(
        id=share.id,
        title=share.title,
        created_at=share.created_at,
        messages=[SharedMessageOut.model_validate(m) for m in share.snapshot],
    )


@router.delete(
    "/{share_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_NOT_FOUND, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
    summary="Revoke a share link",
)
async def revoke_share(share_id: str, user: CurrentUser, services: ServicesDep) -> None:
    await services.accounts.shares.revoke(user.id, share_id)
