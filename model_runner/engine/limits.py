"""The limits of one request once its prompt is known: how many tokens it may generate, and
when it must end to meet the caller's deadline."""

from __future__ import annotations

from model_runner.backends.base import ModelInfo
from model_runner.domain import FinishReason, GenerationRequest
from model_runner.errors import DeadlineTooShort, InvalidArgument
from model_runner.settings import RunnerSettings


def token_budget(
    settings: RunnerSettings, info: ModelInfo, prompt_tokens: int, request: GenerationRequest
) -> tuple[int, FinishReason]:
    """How many tokens this request may generate, and the reason to give at that limit."""
    room = info.max_context_tokens - prompt_tokens
    if room <= 0:
        raise InvalidArgument(
            f"the prompt is {prompt_tokens} tokens but the model's context holds "
            f"{info.max_context_tokens}; shorten the conversation"
        )
    wanted = min(settings.max_tokens_cap, info.max_output_tokens)
    if request.stopping.max_tokens is not None:
        wanted = min(wanted, request.stopping.max_tokens)
    if room < wanted:
        return room, FinishReason.CONTEXT_LENGTH
    return wanted, FinishReason.LENGTH


def stop_time(settings: RunnerSettings, timeout_s: float | None, now: float) -> float | None:
    """When to end with TIME_LIMIT: just before the caller's deadline, so Finished gets out."""
    if timeout_s is None:
        return None
    min_s = settings.min_deadline_ms / 1000
    if timeout_s < min_s:
        raise DeadlineTooShort(
            f"the call's deadline leaves {timeout_s * 1000:.0f} ms; the runner needs at "
            f"least {settings.min_deadline_ms} ms to produce a first token; "
            "raise the client timeout"
        )
    margin = min(settings.deadline_margin_ms / 1000, timeout_s / 2)
    return now + timeout_s - margin
