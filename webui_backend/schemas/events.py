"""Events the server sends about a turn, over WebSocket (`type`) and SSE (`event:`).

These models document the protocol (docs/websocket.md) and type the client; the hot path
encodes the same shapes directly (api/turn_encoding.py), and a test holds the two together.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel


class TurnAccepted(BaseModel):
    type: Literal["turn.accepted"] = "turn.accepted"
    ref: str | None
    turn_id: str
    chat_id: str
    user_message_id: str
    assistant_message_id: str
    created_chat: bool
    # True when a repeated turn_key found an earlier send: nothing new was generated.
    existing: bool = False


class TurnStartedEvent(BaseModel):
    type: Literal["turn.started"] = "turn.started"
    turn_id: str
    seq: int
    model: str
    prompt_tokens: int


class TurnDeltaEvent(BaseModel):
    type: Literal["turn.delta"] = "turn.delta"
    turn_id: str
    seq: int
    text: str


class TurnSnapshotEvent(BaseModel):
    """On a resume served from the stored reply: its whole text through `seq`. It replaces
    the text the client holds; later deltas append to it."""

    type: Literal["turn.snapshot"] = "turn.snapshot"
    turn_id: str
    seq: int
    text: str


class TurnStopResult(BaseModel):
    """`POST /api/turns/{turn_id}/stop`: `stopped` is false when the reply had already ended."""

    turn_id: str
    stopped: bool


class Usage(BaseModel):
    prompt_tokens: int | None
    completion_tokens: int | None


class Timings(BaseModel):
    queue_ms: float | None
    ttft_ms: float | None
    total_ms: float | None


class ErrorBody(BaseModel):
    code: str
    message: str


class TurnFinishedEvent(BaseModel):
    type: Literal["turn.finished"] = "turn.finished"
    turn_id: str
    seq: int
    status: Literal["complete", "interrupted", "cancelled", "error"]
    finish_reason: str | None
    usage: Usage
    timings: Timings
    error: ErrorBody | None


class ErrorEvent(BaseModel):
    """A frame or request was refused; nothing was stored. The connection stays open."""

    type: Literal["error"] = "error"
    ref: str | None
    error: ErrorBody


class PongEvent(BaseModel):
    type: Literal["pong"] = "pong"
    ref: str | None


class ErrorResponse(BaseModel):
    """The JSON body of every 4xx/5xx REST response."""

    error: ErrorBody


ServerEvent = Annotated[
    TurnAccepted | TurnStartedEvent | TurnDeltaEvent | TurnFinishedEvent | ErrorEvent | PongEvent,
    Field(discriminator="type"),
]


class ServerEventEnvelope(RootModel[ServerEvent]):
    """Parses any server event; `.root` is the concrete event (tests, clients, JSON schema)."""
