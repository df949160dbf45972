"""Helpers shared by the runner unit tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from model_runner.domain import Conversation, GenerationEvent, GenerationRequest, Message
from model_runner.engine import Engine
from tests.support.polling import wait_until as wait_until

EngineFactory = Callable[..., Awaitable[Engine]]


def chat(text: str, **fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt=Conversation((Message("user", text),)), **fields)


async def collect(engine: Engine, request: GenerationRequest) -> list[GenerationEvent]:
    return [event async for event in engine.stream(request)]
