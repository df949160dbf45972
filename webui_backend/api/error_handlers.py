"""The one place where errors become HTTP responses: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from webui_backend.deps import WebSocketAuthError
from webui_backend.errors import AppError, RateLimitedError, RunnerBusyError, UnauthorizedError

log = logging.getLogger(__name__)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# OpenAI's error `type` by HTTP status, for the OpenAI-compatible `/v1` routes.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Our shape everywhere; OpenAI's `{"error": {message, type, param, code}}` under /v1."""
    if request.url.path.startswith("/v1/"):
        param = extra.get("details", [{}])[0].get("field") if extra.get("details") else None
        body = {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(status, "server_error"),
                "param": param,
                "code": code,
            }
        }
        return JSONResponse(body, status_code=status, headers=headers)
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def validation_details(errors: Any) -> list[dict[str, str]]:
    """Pydantic errors as `{field, reason}` pairs a person can act on."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        details.append({"field": ".".join(loc) or "body", "reason": str(err.get("msg", ""))})
    return details


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = None
    if isinstance(exc, RunnerBusyError | RateLimitedError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    elif isinstance(exc, UnauthorizedError):
        headers = {"WWW-Authenticate": "Bearer"}
    return _respond(request, exc.status_code, exc.code, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    summary = "; ".join(f"{d['field']}: {d['reason']}" for d in details[:5])
    if request.url.path.startswith("/v1/"):
        # OpenAI answers a malformed body with 400.
        return _respond(
            request, 400, "invalid_request", f"Invalid request: {summary}", None, details=details
        )
    return _respond(
        request, 422, "validation_error", f"Invalid request: {summary}", None, details=details
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        exc.status_code, "http_error"
    )
    return _respond(request, exc.status_code, code, str(exc.detail), exc.headers)


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "The server failed to handle this request."),
        status_code=500,
    )


async def _socket_refused(websocket: WebSocket, exc: Exception) -> None:
    """A WebSocket that failed authentication: accept, then close with 4401 or 4403 and the
    reason (a browser sees no HTTP status for a refused handshake)."""
    assert isinstance(exc, WebSocketAuthError)
    await websocket.accept()
    await websocket.close(code=exc.code, reason=exc.reason)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WebSocketAuthError, _socket_refused)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
