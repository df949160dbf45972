"""Protobuf <-> domain conversions for the servicer; no logic beyond field mapping."""

from __future__ import annotations

from typing import Any

from google.protobuf.duration_pb2 import Duration

from model_runner.domain import (
    Conversation,
    Finished,
    FinishReason,
    GenerationRequest,
    LoadSnapshot,
    Message,
    ModelState,
    OutputParams,
    SamplingParams,
    Started,
    StoppingParams,
    TokenPrompt,
    ToolCall,
)
from model_runner.engine import LoadUpdate, ModelStatus
from model_runner.errors import InvalidArgument
from model_runner.v1 import runner_pb2 as pb

FINISH_REASONS: dict[FinishReason, pb.FinishReason.ValueType] = {
    FinishReason.EOS: pb.FINISH_REASON_EOS,
    FinishReason.STOP_SEQUENCE: pb.FINISH_REASON_STOP_SEQUENCE,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.CONTEXT_LENGTH: pb.FINISH_REASON_CONTEXT_LENGTH,
    FinishReason.TIME_LIMIT: pb.FINISH_REASON_TIME_LIMIT,
    FinishReason.ABORTED: pb.FINISH_REASON_ABORTED,
    FinishReason.ERROR: pb.FINISH_REASON_ERROR,
}
MODEL_STATES: dict[ModelState, pb.ModelState.ValueType] = {
    ModelState.AVAILABLE: pb.MODEL_STATE_AVAILABLE,
    ModelState.LOADING: pb.MODEL_STATE_LOADING,
    ModelState.READY: pb.MODEL_STATE_READY,
    ModelState.UNLOADING: pb.MODEL_STATE_UNLOADING,
    ModelState.FAILED: pb.MODEL_STATE_FAILED,
}


def conversation_from_proto(conversation: pb.Conversation) -> Conversation:
    return Conversation(
        messages=tuple(
            Message(
                role=m.role,
                content=m.content,
                tool_calls=tuple(ToolCall(c.id, c.name, c.arguments_json) for c in m.tool_calls),
                tool_call_id=m.tool_call_id,
            )
            for m in conversation.messages
        ),
        tools_json=conversation.tools_json,
        add_generation_prompt=(
            conversation.add_generation_prompt
            if conversation.HasField("add_generation_prompt")
            else True
        ),
    )


def sampling_from_proto(s: pb.SamplingParams) -> SamplingParams:
    return SamplingParams(
        temperature=s.temperature if s.HasField("temperature") else None,
        top_p=s.top_p if s.HasField("top_p") else None,
        top_k=s.top_k if s.HasField("top_k") else None,
        min_p=s.min_p if s.HasField("min_p") else None,
        repetition_penalty=s.repetition_penalty if s.HasField("repetition_penalty") else None,
        presence_penalty=s.presence_penalty if s.HasField("presence_penalty") else None,
        frequency_penalty=s.frequency_penalty if s.HasField("frequency_penalty") else None,
        seed=s.seed if s.HasField("seed") else None,
    )


def stopping_from_proto(s: pb.StoppingCriteria) -> StoppingParams:
    return StoppingParams(
        max_tokens=s.max_tokens if s.HasField("max_tokens") else None,
        stop=tuple(s.stop),
        stop_token_ids=frozenset(s.stop_token_ids),
        ignore_eos=s.ignore_eos,
    )


def output_from_proto(o: pb.OutputOptions) -> OutputParams:
    return OutputParams(
        return_token_ids=o.return_token_ids,
        stream_interval=o.stream_interval,
        skip_special_tokens=o.skip_special_tokens if o.HasField("skip_special_tokens") else True,
    )


def chat_request_from_proto(request: pb.ChatRequest, timeout_s: float | None) -> GenerationRequest:
    return GenerationRequest(
        prompt=conversation_from_proto(request.conversation),
        request_id=request.request_id,
        model=request.model,
        sampling=sampling_from_proto(request.sampling),
        stopping=stopping_from_proto(request.stopping),
        output=output_from_proto(request.output),
        priority=request.priority,
        timeout_s=timeout_s,
        keep_alive_s=keep_alive_from_proto(request),
    )


def generate_request_from_proto(
    request: pb.GenerateRequest, timeout_s: float | None
) -> GenerationRequest:
    which = request.WhichOneof("input")
    if which is None:
        raise InvalidArgument("set either prompt or token_ids")
    prompt = request.prompt if which == "prompt" else TokenPrompt(tuple(request.token_ids.ids))
    return GenerationRequest(
        prompt=prompt,
        request_id=request.request_id,
        model=request.model,
        sampling=sampling_from_proto(request.sampling),
        stopping=stopping_from_proto(request.stopping),
        output=output_from_proto(request.output),
        priority=request.priority,
        timeout_s=timeout_s,
        keep_alive_s=keep_alive_from_proto(request),
    )


def started_to_proto(event: Started) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        request_id=event.request_id,
        started=pb.Started(model=event.model, prompt_tokens=event.prompt_tokens, seed=event.seed),
    )


def finished_to_proto(request_id: str, event: Finished) -> pb.GenerateResponse:
    u = event.usage
    return pb.GenerateResponse(
        request_id=request_id,
        finished=pb.Finished(
            reason=FINISH_REASONS[event.reason],
            stop_sequence=event.stop_sequence,
            error_message=event.error_message,
            usage=pb.Usage(
                prompt_tokens=u.prompt_tokens,
                completion_tokens=u.completion_tokens,
                cached_prompt_tokens=u.cached_prompt_tokens,
                queue_ns=u.queue_ns,
                ttft_ns=u.ttft_ns,
                total_ns=u.total_ns,
            ),
        ),
    )


def model_to_proto(status: ModelStatus) -> pb.ModelInfo:
    info = status.info
    message = pb.ModelInfo(
        id=status.id,
        source=status.source,
        backend=status.backend,
        state=MODEL_STATES[status.state],
        state_reason=status.state_reason,
        is_default=status.is_default,
    )
    if status.expires_at is not None:
        message.expires_at.FromNanoseconds(int(status.expires_at * 1e9))
    if info is not None:
        message.aliases.extend(info.aliases)
        message.max_context_tokens = info.max_context_tokens
        message.max_output_tokens = info.max_output_tokens
        message.dtype = info.dtype
        message.quantization = info.quantization
        message.memory_bytes = info.memory_bytes
        message.has_chat_template = info.has_chat_template
    return message


def load_update_to_proto(update: LoadUpdate) -> pb.LoadProgress:
    message = pb.LoadProgress(
        state=MODEL_STATES[update.state],
        status=update.status,
        completed_bytes=update.completed_bytes,
        total_bytes=update.total_bytes,
    )
    if update.model is not None:
        message.model.CopyFrom(model_to_proto(update.model))
    return message


def keep_alive_from_proto(message: Any, field: str = "keep_alive") -> float | None:
    """Seconds of an optional Duration field (negative allowed = pinned); None when unset."""
    if not message.HasField(field):
        return None
    duration: Duration = getattr(message, field)
    return duration.seconds + duration.nanos / 1e9


def load_to_proto(load: LoadSnapshot) -> pb.LoadInfo:
    return pb.LoadInfo(
        running=load.running,
        queued=load.queued,
        max_running=load.max_running,
        max_queued=load.max_queued,
        draining=load.draining,
    )
