"""An in-memory stand-in for `GrpcRunnerClient`, for fast unit tests of the backend services.

Scripts are lists of steps: runner events to yield, exceptions to raise, or an asyncio.Event to
wait on (so a test can look at the database while a reply is "generating").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    ModelSummary,
    RunnerEvent,
    RunnerLoad,
    RunnerUnavailableError,
    StreamDelta,
    StreamFinished,
    StreamStarted,
)
from model_runner.client_streams import push_events
from webui_backend.services.titles import TITLE_PROMPT

Step = RunnerEvent | BaseException | asyncio.Event


def reply_script(*pieces: str, model: str = "fake", reason: str = "eos") -> list[Step]:
    steps: list[Step] = [StreamStarted(request_id="", model=model, prompt_tokens=3)]
    steps += [StreamDelta(text=p, completion_tokens=i + 1) for i, p in enumerate(pieces)]
    steps.append(
        StreamFinished(
            reason=reason,
            stop_sequence="",
            prompt_tokens=3,
            completion_tokens=len(pieces),
            queue_ms=0.1,
            ttft_ms=1.0,
            total_ms=2.0,
            error_message="",
        )
    )
    return steps


@dataclass
class FakeRunnerClient:
    scripts: list[list[Step]] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: ["fake"])
    reachable: bool = True
    calls: list[tuple[list[ChatMessage], str, GenerationOptions | None]] = field(
        default_factory=list
    )
    cancelled: list[str] = field(default_factory=list)
    # The gRPC metadata of each chat_stream call (x-request-id, traceparent).
    metadata: list[list[tuple[str, str]]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    load: RunnerLoad = field(default_factory=lambda: RunnerLoad(0, 0, 8, 16, False))
    closed: bool = False

    def turn_metadata(self) -> list[list[tuple[str, str]]]:
        """The metadata of every call but the title requests (their prompt ends with the
        title instruction), in call order."""
        return [
            metadata
            for (messages, _, _), metadata in zip(self.calls, self.metadata, strict=True)
            if messages[-1].content != TITLE_PROMPT
        ]

    def last_call_ending_with(
        self, content: str
    ) -> tuple[list[ChatMessage], str, GenerationOptions | None]:
        """The latest call whose last message is `content`. A new chat's title is asked for
        in a task of its own, so the very latest call may be that one."""
        return next(call for call in reversed(self.calls) if call[0][-1].content == content)

    async def chat_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str = "",
        request_id: str = "",
        options: GenerationOptions | None = None,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> AsyncGenerator[RunnerEvent, None]:
        self.calls.append((list(messages), model, options))
        self.metadata.append(list(metadata))
        if not self.reachable:
            raise RunnerUnavailableError("connection refused")
        script = self.scripts.pop(0) if self.scripts else reply_script("Hello", " there")
        try:
            for step in script:
                if isinstance(step, asyncio.Event):
                    await step.wait()
                elif isinstance(step, BaseException):
                    raise step
                else:
                    yield step
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.append(request_id)
            raise

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
        events = self.chat_stream(
            messages,
            model=model,
            request_id=request_id,
            options=options,
            timeout_s=timeout_s,
            metadata=metadata,
        )
        await push_events(events, on_event)

    async def abort(self, request_id: str) -> bool:
        self.aborted.append(request_id)
        return False

    async def list_models(self) -> list[ModelSummary]:
        if not self.reachable:
            raise RunnerUnavailableError("connection refused")
        return [
            ModelSummary(
                id=m, backend="fake", state="ready", max_context_tokens=4096, is_default=i == 0
            )
            for i, m in enumerate(self.models)
        ]

    async def check_health(self) -> bool:
        return self.reachable

    async def get_load(self) -> RunnerLoad:
        if not self.reachable:
            raise RunnerUnavailableError("connection refused")
        return self.load

    async def close(self) -> None:
        self.closed = True
