"""Bodies and frames that start or watch a chat turn (WebSocket and SSE share them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class GenerationParams(BaseModel):
    """Sampling and stopping parameters; unset fields take the model's defaults."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=131072)
    stop: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=16
    )
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class TurnBody(BaseModel):
    """Send a user message and generate the reply."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(description="The user message.")
    parent_id: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "Message to answer under. Omitted: the chat's active leaf. null: a new root "
            "branch (editing the first message). An id: a sibling branch under it."
        ),
    )
    model: str = Field(default="", max_length=200, description="Model id; empty = default.")
    params: GenerationParams = Field(default_factory=GenerationParams)
    turn_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description=(
            "Client-chosen id of this send, unique per user: sending it again (a retry) "
            "returns the turn the first send started instead of generating twice."
        ),
    )


class ChatSendFrame(TurnBody):
    """WebSocket: start a turn. `chat_id` null starts a new chat."""

    type: Literal["chat.send"]
    ref: str | None = Field(
        default=None, max_length=128, description="Echoed in the reply events and errors."
    )
    chat_id: str | None = Field(default=None, max_length=64)
    after_seq: int = Field(
        default=0, ge=0, description="With a repeated turn_key: stream the turn after this seq."
    )


class TurnSubscribeFrame(BaseModel):
    """WebSocket: watch a live turn, from after the given sequence number."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["turn.subscribe"]
    ref: str | None = Field(default=None, max_length=128)
    turn_id: str = Field(max_length=64)
    after_seq: int = Field(default=0, ge=0)


class TurnStopFrame(BaseModel):
    """WebSocket: stop a reply being generated (on any worker); the partial text is kept."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["turn.stop"]
    ref: str | None = Field(default=None, max_length=128)
    turn_id: str = Field(max_length=64)


class FollowUpBody(BaseModel):
    """Continue or regenerate a stored reply."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="", max_length=200, description="Regenerate only; empty = the reply's model."
    )
    params: GenerationParams = Field(default_factory=GenerationParams)
    turn_key: str | None = Field(default=None, min_length=1, max_length=128)


class TurnContinueFrame(FollowUpBody):
    """WebSocket: generate more text into an interrupted, cancelled or cut-off reply."""

    type: Literal["turn.continue"]
    ref: str | None = Field(default=None, max_length=128)
    turn_id: str = Field(max_length=64)


class TurnRegenerateFrame(FollowUpBody):
    """WebSocket: a new reply under the same user message, as a sibling of `turn_id`."""

    type: Literal["turn.regenerate"]
    ref: str | None = Field(default=None, max_length=128)
    turn_id: str = Field(max_length=64)


class PingFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["ping"]
    ref: str | None = Field(default=None, max_length=128)


ClientFrame = Annotated[
    ChatSendFrame
    | TurnSubscribeFrame
    | TurnStopFrame
    | TurnContinueFrame
    | TurnRegenerateFrame
    | PingFrame,
    Field(discriminator="type"),
]


class ClientFrameEnvelope(RootModel[ClientFrame]):
    """Parses any client frame; `.root` is the concrete frame."""
