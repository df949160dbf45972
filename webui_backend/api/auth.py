"""Accounts over REST: register, log in and out, who am I, change password."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from webui_backend.api.openapi_responses import error_responses
from webui_backend.db.models import User
from webui_backend.deps import CSRF_COOKIE, SESSION_COOKIE, AnyUser, ServicesDep
from webui_backend.schemas.auth import (
    AuthConfigOut,
    LoginBody,
    LoginOut,
    PasswordChangeBody,
    RegisterBody,
    RegisterOut,
    UserOut,
)
from webui_backend.services.auth import LoginResult

router = APIRouter(prefix="/api/auth", tags=["auth"])


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role.value,
        created_at=user.created_at,
    )


def _client(request: Request) -> tuple[str, str]:
    address = request.client.host if request.client else ""
    return address, request.headers.get("user-agent", "")


def _set_session_cookies(
    response: Response, result: LoginResult, *, max_age: int, secure: bool
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        result.session_token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    # Readable by the page's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        result.csrf_token,
        max_age=max_age,
        httponly=False,
        samesite="lax",
        secure=secure,
        path="/",
    )


@router.get("/config", response_model=AuthConfigOut, summary="Public: can one sign up?")
async def auth_config(services: ServicesDep) -> AuthConfigOut:
    has_users = await services.auth.has_users()
    runtime = services.accounts.settings_store.current
    return AuthConfigOut(
        signup_enabled=runtime.signup_enabled or not has_users, has_users=has_users
    )


@router.post(
    "/register",
    response_model=RegisterOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(403, 409, 422, 429),
    summary="Create an account (the first one becomes admin) and sign in",
)
async def register(
    body: RegisterBody, request: Request, response: Response, services: ServicesDep
) -> RegisterOut:
    address, agent = _client(request)
    user = await services.auth.register(
        email=body.email, password=body.password, name=body.name, address=address
    )
    result = await services.auth.issue_session(user, address=address, user_agent=agent)
    _set_session_cookies(
        response,
        result,
        max_age=services.auth.session_ttl_s,
        secure=services.settings.cookie_secure,
    )
    return RegisterOut(
        user=user_out(user), access_token=result.access_token, expires_in=result.expires_in
    )


@router.post(
    "/login",
    response_model=LoginOut,
    responses=error_responses(401, 422, 429),
    summary="Sign in: an access token for programs, a session cookie for the browser",
)
async def login(
    body: LoginBody, request: Request, response: Response, services: ServicesDep
) -> LoginOut:
    address, agent = _client(request)
    result = await services.auth.login(
        email=body.email, password=body.password, address=address, user_agent=agent
    )
    _set_session_cookies(
        response,
        result,
        max_age=services.auth.session_ttl_s,
        secure=services.settings.cookie_secure,
    )
    return LoginOut(
        user=user_out(result.user), access_token=result.access_token, expires_in=result.expires_in
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403),
    summary="End this browser session",
)
async def logout(user: AnyUser, response: Response, services: ServicesDep) -> Response:
    await services.auth.logout(user)
    response.status_code = status.HTTP_204_NO_CONTENT
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/me", response_model=UserOut, responses=error_responses(401, 403), summary="Who am I")
async def me(user: AnyUser, services: ServicesDep) -> UserOut:
    return user_out(await services.auth.get_user(user.id))


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, 401, 403, 422),
    summary="Change the password; other sessions and older access tokens end",
)
async def change_password(body: PasswordChangeBody, user: AnyUser, services: ServicesDep) -> None:
    await services.auth.change_password(
        user, current_password=body.current_password, new_password=body.new_password
    )
