"""What the services need from a model runner. `GrpcRunnerClient` satisfies it; unit tests pass
a fake through the constructor instead."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    ModelSummary,
    RunnerEvent,
)


class RunnerClient(Protocol):
    def chat_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str = "",
        request_id: str = "",
        options: GenerationOptions | None = None,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> AsyncIterator[RunnerEvent]: ...

    async def chat_into(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_event: Callable[[RunnerEvent], None],
        model: str = "",
        request_id: str = "",
        options: GenerationOptions | None = None,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """The same events pushed to `on_event` as they arrive (no wake-up of the caller's
        task per event); returns after StreamFinished, raises what `chat_stream` raises."""
        ...

    async def abort(self, request_id: str) -> bool: ...

    async def list_models(self) -> list[ModelSummary]: ...

    async def check_health(self) -> bool: ...
