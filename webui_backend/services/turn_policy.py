"""The seam between a chat turn and administration: who may send, to which model, with which
defaults. `ChatTurnService` is given an object with this shape (`ModelAccessService`); unit
tests may give it none, and then every turn is admitted as sent."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from model_runner.client import ChatMessage, GenerationOptions


@dataclass(frozen=True, slots=True)
class TurnModelSettings:
    """What the administrator configured for the model of one turn."""

    params: dict[str, Any]
    system_prompt: str


class TurnPolicy(Protocol):
    async def admit(self, user_id: str, model: str) -> None:
        """Raise RateLimitedError or ModelNotFoundError (not allowed) before anything is
        stored."""

    async def model_settings(self, model: str) -> TurnModelSettings: ...


class TitleWriter(Protocol):
    async def write_title(self, user_id: str, chat_id: str, model: str) -> None: ...


_OPTION_NAMES = {f.name for f in fields(GenerationOptions)}


def apply_model_settings(
    history: list[ChatMessage], options: GenerationOptions, settings: TurnModelSettings
) -> tuple[list[ChatMessage], GenerationOptions]:
    """The admin's system prompt goes first unless the conversation brings its own; default
    parameters fill only what the request left unset."""
    if settings.system_prompt and not any(m.role == "system" for m in history):
        history = [ChatMessage(role="system", content=settings.system_prompt), *history]
    defaults: dict[str, Any] = {}
    for name, value in settings.params.items():
        if name not in _OPTION_NAMES or value is None:
            continue
        current = getattr(options, name)
        if current is None or current == ():
            defaults[name] = tuple(value) if name == "stop" else value
    return history, replace(options, **defaults) if defaults else options
