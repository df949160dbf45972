"""The value types of `model_runner.client` and their conversions from and to the protobuf
messages.

Kept apart from the client so that the transport (channels, deadlines, error mapping) reads on
its own; every public name here is re-exported by `model_runner.client`, which is where callers
import them from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from model_runner.v1 import runner_pb2 as pb


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system", "user", "assistant" or "tool"
    content: str


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """None = the model's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Tokens per delta after the first; 0 = one delta per runner step (fewer when lagging).
    stream_interval: int = 0
    # How long the model stays loaded after this request (Ollama semantics): 0 = unload after
    # it, negative = pin; None = the model's current keep-alive.
    keep_alive_s: float | None = None


@dataclass(frozen=True, slots=True)
class StreamStarted:
    request_id: str
    model: str
    prompt_tokens: int
    # The runner that took the call (its address), for logs and traces.
    runner: str = ""


@dataclass(frozen=True, slots=True)
class StreamDelta:
    text: str  # new text only; never part of a stop string
    completion_tokens: int  # running total


@dataclass(frozen=True, slots=True)
class StreamFinished:
    reason: str  # "eos"|"stop"|"length"|"context_length"|"time_limit"|"aborted"|"error"
    stop_sequence: str
    prompt_tokens: int
    completion_tokens: int
    queue_ms: float
    ttft_ms: float
    total_ms: float
    error_message: str
    cached_prompt_tokens: int = 0  # prompt tokens the runner's prefix cache served


RunnerEvent = StreamStarted | StreamDelta | StreamFinished


@dataclass(frozen=True, slots=True)
class ModelSummary:
    id: str
    backend: str
    state: str  # "available"|"loading"|"ready"|"unloading"|"failed"|"unspecified"
    max_context_tokens: int
    is_default: bool


@dataclass(frozen=True, slots=True)
class ModelDetails:
    """Everything GetModelInfo reports about one model."""

    id: str
    aliases: tuple[str, ...]
    source: str
    backend: str
    state: str  # as ModelSummary.state
    state_reason: str
    max_context_tokens: int
    max_output_tokens: int
    dtype: str
    quantization: str
    memory_bytes: int
    has_chat_template: bool
    expires_at: datetime | None  # when keep-alive unloads it; None = pinned or not loaded
    is_default: bool


@dataclass(frozen=True, slots=True)
class LoadProgressEvent:
    """One step of LoadModel; the last has state "ready" and `model` set."""

    state: str
    status: str
    completed_bytes: int
    total_bytes: int
    model: ModelDetails | None


@dataclass(frozen=True, slots=True)
class RunnerLoad:
    running: int
    queued: int
    max_running: int
    max_queued: int
    draining: bool


_FINISH_REASONS: dict[int, str] = {
    pb.FINISH_REASON_EOS: "eos",
    pb.FINISH_REASON_STOP_SEQUENCE: "stop",
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_CONTEXT_LENGTH: "context_length",
    pb.FINISH_REASON_TIME_LIMIT: "time_limit",
    pb.FINISH_REASON_ABORTED: "aborted",
    pb.FINISH_REASON_ERROR: "error",
}


def conversation_to_proto(messages: Sequence[ChatMessage]) -> pb.Conversation:
    return pb.Conversation(
        messages=[pb.ChatMessage(role=m.role, content=m.content) for m in messages]
    )


def chat_request_to_proto(
    messages: Sequence[ChatMessage],
    model: str,
    request_id: str,
    options: GenerationOptions | None,
) -> pb.ChatRequest:
    request = pb.ChatRequest(
        request_id=request_id, model=model, conversation=conversation_to_proto(messages)
    )
    if options is not None:
        if options.temperature is not None:
            request.sampling.temperature = options.temperature
        if options.top_p is not None:
            request.sampling.top_p = options.top_p
        if options.seed is not None:
            request.sampling.seed = options.seed
        if options.max_tokens is not None:
            request.stopping.max_tokens = options.max_tokens
        request.stopping.stop.extend(options.stop)
        request.output.stream_interval = options.stream_interval
        if options.keep_alive_s is not None:
            request.keep_alive.FromNanoseconds(int(options.keep_alive_s * 1e9))
    return request


def state_name(state: pb.ModelState.ValueType) -> str:
    """ "MODEL_STATE_READY" -> "ready"."""
    return pb.ModelState.Name(state).removeprefix("MODEL_STATE_").lower()


def summary_from_proto(m: pb.ModelInfo) -> ModelSummary:
    return ModelSummary(
        id=m.id,
        backend=m.backend,
        state=state_name(m.state),
        max_context_tokens=m.max_context_tokens,
        is_default=m.is_default,
    )


def details_from_proto(m: pb.ModelInfo) -> ModelDetails:
    return ModelDetails(
        id=m.id,
        aliases=tuple(m.aliases),
        source=m.source,
        backend=m.backend,
        state=state_name(m.state),
        state_reason=m.state_reason,
        max_context_tokens=m.max_context_tokens,
        max_output_tokens=m.max_output_tokens,
        dtype=m.dtype,
        quantization=m.quantization,
        memory_bytes=m.memory_bytes,
        has_chat_template=m.has_chat_template,
        expires_at=m.expires_at.ToDatetime(tzinfo=UTC) if m.HasField("expires_at") else None,
        is_default=m.is_default,
    )


def finished_from_proto(finished: pb.Finished) -> StreamFinished:
    usage = finished.usage
    return StreamFinished(
        reason=_FINISH_REASONS.get(finished.reason, "error"),
        stop_sequence=finished.stop_sequence,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        queue_ms=usage.queue_ns / 1e6,
        ttft_ms=usage.ttft_ns / 1e6,
        total_ms=usage.total_ns / 1e6,
        error_message=finished.error_message,
        cached_prompt_tokens=usage.cached_prompt_tokens,
    )


def load_progress_from_proto(progress: pb.LoadProgress) -> LoadProgressEvent:
    return LoadProgressEvent(
        state=state_name(progress.state),
        status=progress.status,
        completed_bytes=progress.completed_bytes,
        total_bytes=progress.total_bytes,
        model=details_from_proto(progress.model) if progress.HasField("model") else None,
    )


def load_from_proto(load: pb.LoadInfo) -> RunnerLoad:
    return RunnerLoad(load.running, load.queued, load.max_running, load.max_queued, load.draining)
