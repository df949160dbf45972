"""Helpers shared by the runner unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from model_runner.domain import Conversation, GenerationEvent, GenerationRequest, Message
from model_runner.engine import Engine

EngineFactory = Callable[..., Awaitable[Engine]]


def chat(text: str, **fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt=Conversation((Message("user", text),)), **fields)


async def collect(engine: Engine, request: GenerationRequest) -> list[GenerationEvent]:
    return [event async for event in engine.stream(request)]


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Polls `condition` until true, failing after `timeout_s` (no sleep-and-hope)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 -- engine state has no event to wait on
            await asyncio.sleep(0.005)
