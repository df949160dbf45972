"""Who a request acts for, as the services see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Via = Literal["session", "token", "api_key"]


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    id: str
    role: str
    email: str = ""
    name: str = ""
    via: Via = "token"
    session_id: str | None = None
