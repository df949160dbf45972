"""Serving `/v1/chat/completions` through the same runner client and limits as chat turns.

Calls are not stored as chats (as in Open WebUI and OpenAI's API: a program keeps its own
history), but they pass the same gate as a chat turn (the turn policy: per-user rate limit,
model access, the administrator's model defaults) and their tokens are recorded in the same
daily usage. A client that disconnects mid-stream cancels the runner call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    RunnerError,
    StreamDelta,
    StreamFinished,
    StreamStarted,
)
from model_runner.client import RunnerBusyError as ClientBusyError
from model_runner.client import RunnerModelNotFoundError as ClientModelNotFoundError
from model_runner.client import RunnerRejectedError as ClientRejectedError
from webui_backend.api.openai_compat.protocol import (
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    chunk,
)
from webui_backend.errors import (
    AppError,
    InvalidInputError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RunnerBusyError,
    RunnerRejectedError,
    RunnerUnavailableError,
)
from webui_backend.observability.tracing import current_runner_metadata
from webui_backend.services.model_catalog import ModelCatalog
from webui_backend.services.runner_errors import describe_runner_error
from webui_backend.services.runner_port import RunnerClient
from webui_backend.services.turn_policy import TurnPolicy, apply_model_settings
from webui_backend.services.usage import UsageService

log = logging.getLogger(__name__)

# Runner finish reasons in OpenAI's vocabulary.
_FINISH = {"eos": "stop", "stop": "stop", "length": "length", "context_length": "length"}


class OpenAIServing:
    def __init__(
        self,
        *,
        runner: RunnerClient,
        catalog: ModelCatalog,
        max_message_chars: int,
        runner_timeout_s: float,
        user_id: str,
        policy: TurnPolicy | None = None,
        usage: UsageService | None = None,
        allowed_models: Callable[[], Awaitable[set[str]]] | None = None,
    ) -> None:
        self._runner = runner
        self._catalog = catalog
        self._max_chars = max_message_chars
        self._timeout_s = runner_timeout_s
        self._user_id = user_id
        self._policy = policy
        self._usage = usage
        self._allowed_models = allowed_models

    async def models(self) -> ModelList:
        models = await self._catalog.list()
        if models is None:
            raise RunnerUnavailableError("The model runner cannot be reached.")
        if self._allowed_models is not None:
            # Only what this account may use (enabled, allowed for it), as in the UI's list.
            allowed = await self._allowed_models()
            models = [m for m in models if m.id in allowed]
        now = int(time.time())
        return ModelList(data=[ModelCard(id=m.id, created=now, owned_by=m.backend) for m in models])

    async def _prepare(
        self, request: ChatCompletionRequest
    ) -> tuple[list[ChatMessage], GenerationOptions]:
        if request.n != 1:
            raise InvalidInputError("Only n=1 is supported.", code="invalid_n")
        messages = [
            ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
            for m in request.messages
        ]
        total = sum(len(m.content) for m in messages)
        if total > self._max_chars:
            raise PayloadTooLargeError(
                f"The messages have {total} characters; the limit is {self._max_chars}.",
                code="context_length_exceeded",
            )
        if self._policy is not None:
            await self._policy.admit(self._user_id, request.model)
        await self._catalog.check(request.model)
        options = GenerationOptions(
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_completion_tokens or request.max_tokens,
            stop=request.stop_list(),
            seed=request.seed,
        )
        if self._policy is not None:
            settings = await self._policy.model_settings(request.model)
            messages, options = apply_model_settings(messages, options, settings)
        return messages, options

    async def _record_usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Add the call's tokens to the user's daily usage; a storage failure is logged, never
        turned into a failed completion (the text was already generated)."""
        if self._usage is None or not (prompt_tokens or completion_tokens):
            return
        try:
            await self._usage.record(
                self._user_id,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        except Exception:
            log.exception("could not record /v1 usage of user %s", self._user_id)

    async def complete(self, request: ChatCompletionRequest) -> dict[str, Any]:
        """A whole (non-streamed) completion. Raises AppError subclasses."""
        messages, options = await self._prepare(request)
        parts: list[str] = []
        model = request.model
        finished: StreamFinished | None = None
        try:
            async for event in self._runner.chat_stream(
                messages,
                model=request.model,
                options=options,
                timeout_s=self._timeout_s,
                metadata=current_runner_metadata(),
            ):
                if type(event) is StreamDelta:
                    parts.append(event.text)
                elif type(event) is StreamStarted:
                    model = event.model
                elif type(event) is StreamFinished:
                    finished = event
        except RunnerError as exc:
            raise _app_error(exc) from exc
        prompt = finished.prompt_tokens if finished else 0
        completion = finished.completion_tokens if finished else 0
        await self._record_usage(model, prompt, completion)
        return {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(parts)},
                    "finish_reason": _FINISH.get(finished.reason if finished else "", "stop"),
                    "logprobs": None,
                }
            ],
            "usage": _usage(finished),
        }

    async def open_stream(self, request: ChatCompletionRequest) -> AsyncIterator[bytes]:
        """Validate now (errors become a JSON response), then stream `data:` chunks."""
        messages, options = await self._prepare(request)
        events = self._runner.chat_stream(
            messages,
            model=request.model,
            options=options,
            timeout_s=self._timeout_s,
            metadata=current_runner_metadata(),
        )
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        first: Any = None
        try:
            first = await anext(aiter(events), None)  # admission errors become 4xx/5xx
        except RunnerError as exc:
            raise _app_error(exc) from exc
        return self._sse(request, events, first, include_usage)

    async def _sse(
        self, request: ChatCompletionRequest, events: Any, first: Any, include_usage: bool
    ) -> AsyncIterator[bytes]:
        cid, created, model = _completion_id(), int(time.time()), request.model
        dumps = orjson.dumps
        finished: StreamFinished | None = None
        # What was generated so far, for the usage record when the client goes away early.
        prompt_tokens = completion_tokens = 0
        recorded = False

        def frame(body: dict[str, Any]) -> bytes:
            return b"data: " + dumps(body) + b"\n\n"

        try:
            pending = [first] if first is not None else []
            if isinstance(first, StreamStarted):
                model = first.model
                prompt_tokens = first.prompt_tokens
                pending = []
            yield frame(chunk(cid, created, model, {"role": "assistant", "content": ""}, None))
            try:
                async for event in _chain(pending, events):
                    if type(event) is StreamDelta:
                        completion_tokens = event.completion_tokens
                        yield frame(chunk(cid, created, model, {"content": event.text}, None))
                    elif type(event) is StreamFinished:
                        finished = event
                        prompt_tokens = event.prompt_tokens
                        completion_tokens = event.completion_tokens
            except RunnerError as exc:
                code, message = describe_runner_error(exc)
                body = {
                    "error": {
                        "message": message,
                        "type": "server_error",
                        "param": None,
                        "code": code,
                    }
                }
                yield frame(body)
                return
            # Recorded before the last chunks: a client may read its usage once it sees [DONE].
            recorded = True
            await self._record_usage(model, prompt_tokens, completion_tokens)
            reason = _FINISH.get(finished.reason if finished else "", "stop")
            yield frame(chunk(cid, created, model, {}, reason))
            if include_usage and finished is not None:
                usage_chunk = chunk(cid, created, model, {}, None)
                usage_chunk["choices"] = []
                usage_chunk["usage"] = _usage(finished)
                yield frame(usage_chunk)
            yield b"data: [DONE]\n\n"
        finally:
            # A client that went away cancels the runner call (and frees its slot).
            with contextlib.suppress(Exception):
                await events.aclose()
            if not recorded:
                # Shielded: a disconnect cancels this generator; the tokens were still spent.
                await asyncio.shield(self._record_usage(model, prompt_tokens, completion_tokens))


async def _chain(head: list[Any], rest: Any) -> AsyncIterator[Any]:
    for item in head:
        yield item
    async for item in rest:
        yield item


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _app_error(exc: RunnerError) -> AppError:
    """The runner client's error as the domain error the one handler renders."""
    code, message = describe_runner_error(exc)
    if isinstance(exc, ClientBusyError):
        return RunnerBusyError(message, retry_after_s=(exc.retry_after_ms or 1000) / 1000)
    if isinstance(exc, ClientModelNotFoundError):
        return ModelNotFoundError(message)
    if isinstance(exc, ClientRejectedError):
        return RunnerRejectedError(message, code=code)
    return RunnerUnavailableError(message, code=code)


def _usage(finished: StreamFinished | None) -> dict[str, object]:
    """OpenAI's usage object (zeros when the stream ended without a Finished event);
    `cached_tokens` are prompt tokens the runner's prefix cache served (llama.cpp backend), as
    OpenAI reports its own prompt caching."""
    prompt = finished.prompt_tokens if finished else 0
    completion = finished.completion_tokens if finished else 0
    cached = finished.cached_prompt_tokens if finished else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
