"""The request id of every HTTP request and WebSocket connection.

The client may send `X-Request-ID` (1-64 letters, digits and `-_.:`); anything else, or none,
gets a fresh id. The id is bound for the request (every log line carries it), returned in the
`X-Request-ID` response header (on a WebSocket: in the handshake response), added to the
request's span, and sent on to the runner with each generation.
"""

from __future__ import annotations

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_runner.telemetry.request_id import (
    REQUEST_ID_HEADER,
    bind_request_id,
    new_request_id,
    reset_request_id,
    valid_request_id,
)

_HEADER = REQUEST_ID_HEADER.encode()


def request_id_of(scope: Scope) -> str:
    """The client's valid `X-Request-ID`, or a new id."""
    for name, value in scope.get("headers", ()):
        if name == _HEADER:
            found = valid_request_id(value.decode("latin-1"))
            if found is not None:
                return found
            break
    return new_request_id()


class RequestIdMiddleware:
    """Pure ASGI (no extra task per request, so the bound id reaches the route)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("request.id", request_id)
        header = (_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = bind_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_request_id(token)
