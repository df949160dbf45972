"""The request id: one short token that ties together every log line of one request or turn,
in the backend and, through gRPC metadata, in the runner.

It lives in a context variable so that log records pick it up without being passed it; code that
hands work to another task carries it explicitly and binds it there (`bind_request_id`).
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token

# HTTP header (any case) and gRPC metadata key (gRPC keys are lower case).
REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID_CHARS = 64

# Letters, digits and `-_.:`: safe in a log line, a header and a metadata value.
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def valid_request_id(value: str | None) -> str | None:
    """`value` if it is a usable request id (1-64 safe characters), else None."""
    if not value or len(value) > MAX_REQUEST_ID_CHARS or not _SAFE.fullmatch(value):
        return None
    return value


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str | None) -> Token[str | None]:
    """Make `request_id` the current one; pass the token to `reset_request_id` in the same
    task when done (a task that ends anyway may skip the reset)."""
    return _request_id.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)
