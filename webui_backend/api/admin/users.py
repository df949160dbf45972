"""Administering accounts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from webui_backend.api.openapi_responses import error_responses
from webui_backend.db.models import User, UserRole
from webui_backend.deps import AdminUser, ServicesDep
from webui_backend.schemas.admin import AdminUserList, AdminUserOut, AdminUserPatch

router = APIRouter(prefix="/users", tags=["admin: users"])
_ERRORS = error_responses(404, 409, 422)


def user_out(user: User) -> AdminUserOut:
    return AdminUserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role.value,
        disabled=user.disabled_at is not None,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


@router.get("", response_model=AdminUserList)
async def list_users(
    admin: AdminUser,
    services: ServicesDep,
    q: Annotated[str, Query(max_length=200, description="Part of the email or name.")] = "",
    role: Literal["admin", "user", "pending"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AdminUserList:
    users, total = await services.accounts.users.search(
        query=q, role=UserRole(role) if role else None, limit=limit, offset=offset
    )
    return AdminUserList(items=[user_out(u) for u in users], total=total)


@router.get("/{user_id}", response_model=AdminUserOut, responses=_ERRORS)
async def get_user(user_id: str, admin: AdminUser, services: ServicesDep) -> AdminUserOut:
    return user_out(await services.accounts.users.get(user_id))


@router.patch("/{user_id}", response_model=AdminUserOut, responses=_ERRORS)
async def update_user(
    user_id: str, body: AdminUserPatch, admin: AdminUser, services: ServicesDep
) -> AdminUserOut:
    """Change the role and/or disable (ends the account's sessions and API keys at once) or
    enable an account. The last active admin cannot be demoted or disabled."""
    users = services.accounts.users
    user = await users.get(user_id)
    if body.role is not None:
        user = await users.set_role(admin, user_id, UserRole(body.role))
    if body.disabled is not None:
        user = await users.set_disabled(admin, user_id, body.disabled)
    return user_out(user)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
async def delete_user(user_id: str, admin: AdminUser, services: ServicesDep) -> None:
    """Delete the account with its chats, messages, shares and keys."""
    await services.accounts.users.delete(admin, user_id)
