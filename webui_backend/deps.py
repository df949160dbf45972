"""Annotated dependency aliases, so routes read like prose."""

from __future__ import annotations

import hmac
from typing import Annotated, cast

from fastapi import Depends
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from webui_backend.container import AppServices
from webui_backend.db.models import UserRole
from webui_backend.errors import AppError, ForbiddenError, UnauthorizedError
from webui_backend.services.principal import AuthenticatedUser

__all__ = ["AuthenticatedUser"]


def services_of(conn: HTTPConnection) -> AppServices:
    return cast(AppServices, conn.app.state.services)


async def get_services(conn: HTTPConnection) -> AppServices:
    # async on purpose: FastAPI runs a plain `def` dependency on its thread pool, and this one
    # is on every request (a thread hop cost more CPU than the rest of a small request).
    return services_of(conn)


ServicesDep = Annotated[AppServices, Depends(get_services)]


SESSION_COOKIE = "webui_session"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# WebSocket close codes for a refused socket (docs/websocket.md).
WS_CLOSE_UNAUTHORIZED = 4401
WS_CLOSE_FORBIDDEN = 4403

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An access token from `POST /api/auth/login`, or an API key (`sk-...`).",
)
session_cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="The browser session. State-changing requests must also send the "
    "`X-CSRF-Token` header equal to the `csrf_token` cookie.",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
CookieDep = Annotated[str | None, Depends(session_cookie_scheme)]


class WebSocketAuthError(Exception):
    """Raised by the auth dependencies on a WebSocket: the socket is accepted and closed with
    `code` (a browser cannot see an HTTP status on a refused handshake)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _authenticate(
    conn: HTTPConnection, services: AppServices, bearer: str | None, cookie: str | None
) -> AuthenticatedUser:
    """Bearer credentials win over the cookie. Raises UnauthorizedError or ForbiddenError."""
    if bearer:
        return await services.auth.authenticate_bearer(bearer)
    if cookie:
        principal = await services.auth.authenticate_session(cookie)
        _check_cookie_request(conn, services, cookie)
        return principal
    raise UnauthorizedError(
        "Log in, or send an access token or API key as `Authorization: Bearer`.",
        code="unauthorized",
    )


def _check_cookie_request(conn: HTTPConnection, services: AppServices, cookie: str) -> None:
    """A cookie rides along with cross-site requests, so what it authorizes is checked: a
    state change needs the CSRF header, equal to the CSRF cookie and derived from this very
    session (a double submit bound to the session), a WebSocket a same-origin page."""
    if conn.scope["type"] == "websocket":
        origin = conn.headers.get("origin")
        host = conn.headers.get("host", "")
        if origin is not None and origin.split("://", 1)[-1] != host:
            raise ForbiddenError("Cross-origin socket refused.", code="origin_mismatch")
        return
    if conn.scope.get("method", "GET") in _SAFE_METHODS:
        return
    expected = conn.cookies.get(CSRF_COOKIE)
    sent = conn.headers.get(CSRF_HEADER)
    if (
        not expected
        or not sent
        or not hmac.compare_digest(expected, sent)
        or not services.auth.csrf_ok(cookie, sent)
    ):
        raise ForbiddenError(
            f"Send the {CSRF_HEADER} header equal to the {CSRF_COOKIE} cookie.",
            code="csrf_failed",
        )


def _socket_error(conn: HTTPConnection, exc: AppError) -> Exception:
    if conn.scope["type"] != "websocket":
        return exc
    code = WS_CLOSE_UNAUTHORIZED if exc.status_code == 401 else WS_CLOSE_FORBIDDEN
    return WebSocketAuthError(code, f"{exc.code}: {exc.message}"[:120])


async def get_any_user(
    conn: HTTPConnection, bearer: BearerDep, cookie: CookieDep
) -> AuthenticatedUser:
    """Any signed-in account, `pending` included (it may see that it waits)."""
    return await _user_of(conn, bearer, cookie)


async def _user_of(
    conn: HTTPConnection, bearer: HTTPAuthorizationCredentials | None, cookie: str | None
) -> AuthenticatedUser:
    # The services come from the app, not from `ServicesDep`: FastAPI's every dependency
    # costs tens of µs per request, and these run on every authenticated request.
    services = services_of(conn)
    try:
        return await _authenticate(conn, services, bearer.credentials if bearer else None, cookie)
    except AppError as exc:
        raise _socket_error(conn, exc) from exc


AnyUser = Annotated[AuthenticatedUser, Depends(get_any_user)]


async def recheck_socket_user(conn: HTTPConnection, services: AppServices) -> None:
    """Authenticate an open socket's credentials again (they were checked when it opened);
    raises UnauthorizedError or ForbiddenError when they no longer admit an active account."""
    header = conn.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else None
    if bearer:
        user = await services.auth.authenticate_bearer(bearer)
    else:
        cookie = conn.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise UnauthorizedError("The socket has no credentials.", code="unauthorized")
        user = await services.auth.authenticate_session(cookie)
    if user.role == UserRole.PENDING.value:
        raise ForbiddenError(
            "An administrator has not approved this account yet.", code="account_pending"
        )


async def get_current_user(
    conn: HTTPConnection, bearer: BearerDep, cookie: CookieDep
) -> AuthenticatedUser:
    """An active account (admin or user). Pending accounts get 403 `account_pending`.

    Takes the credentials itself rather than through `AnyUser`: one dependency level less
    on the hottest routes."""
    user = await _user_of(conn, bearer, cookie)
    if user.role == UserRole.PENDING.value:
        exc = ForbiddenError(
            "An administrator has not approved this account yet.", code="account_pending"
        )
        raise _socket_error(conn, exc)
    return user


CurrentUser = Annotated[AuthenticatedUser, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> AuthenticatedUser:
    if user.role != UserRole.ADMIN.value:
        raise ForbiddenError("Administrators only.", code="admin_required")
    return user


AdminUser = Annotated[AuthenticatedUser, Depends(get_admin_user)]


async def get_program_user(conn: HTTPConnection, bearer: BearerDep) -> AuthenticatedUser:
    """For program APIs (the OpenAI-compatible `/v1`): `Authorization: Bearer` with an API key
    or an access token; cookies are not accepted, so no CSRF question arises. Pending
    accounts are refused like on every other route."""
    try:
        if bearer is None or not bearer.credentials:
            raise UnauthorizedError(
                "Send an API key or access token as `Authorization: Bearer`.",
                code="unauthorized",
            )
        services = services_of(conn)
        user = await services.auth.authenticate_bearer(bearer.credentials)
        if user.role == UserRole.PENDING.value:
            raise ForbiddenError(
                "An administrator has not approved this account yet.", code="account_pending"
            )
    except AppError as exc:
        raise _socket_error(conn, exc) from exc
    return user


ProgramUser = Annotated[AuthenticatedUser, Depends(get_program_user)]
# The name the OpenAI-compatible API imports.
ApiKeyUser = ProgramUser
