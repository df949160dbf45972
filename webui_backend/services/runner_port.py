"""What the services need from a model runner. `GrpcRunnerClient` satisfies it; unit tests pass
a fake through the constructor instead."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
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

    async def abort(self, request_id: str) -> bool: ...

    async def list_models(self) -> list[ModelSummary]: ...

    async def check_health(self) -> bool: ...
