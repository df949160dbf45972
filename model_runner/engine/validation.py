"""Checks a request before it costs anything; every message says what to change."""

from __future__ import annotations

import math

from model_runner.domain import (
    Conversation,
    GenerationRequest,
    SamplingParams,
    StoppingParams,
    TokenPrompt,
)
from model_runner.errors import InvalidArgument

ROLES = frozenset({"system", "user", "assistant", "tool"})
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_REQUEST_ID_CHARS = 128


def validate_request(request: GenerationRequest, *, max_prompt_chars: int | None = None) -> None:
    """Raises `InvalidArgument` for anything the engine cannot or should not run."""
    if len(request.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(f"request_id is longer than {MAX_REQUEST_ID_CHARS} characters")
    validate_prompt(request.prompt, max_prompt_chars)
    validate_sampling(request.sampling)
    validate_stopping(request.stopping)


def validate_prompt(prompt: Conversation | str | TokenPrompt, max_chars: int | None) -> None:
    """Refuses empty prompts, unknown roles and prompts over `max_chars` characters.

    The size check runs before tokenizing: tokenizing a 100 MB message would cost seconds of
    CPU that other requests share, only to learn that it cannot fit any context."""
    if max_chars is not None:
        size = _prompt_chars(prompt)
        if size > max_chars:
            raise InvalidArgument(
                f"the prompt is {size:,} characters; this runner accepts at most "
                f"{max_chars:,} (RUNNER_MAX_PROMPT_CHARS), and the model's context is smaller "
                "still: shorten the conversation or send the document in parts"
            )
    if isinstance(prompt, Conversation):
        if not prompt.messages:
            raise InvalidArgument("the conversation is empty; send at least one message")
        for index, message in enumerate(prompt.messages):
            if message.role not in ROLES:
                raise InvalidArgument(
                    f"messages[{index}].role is {message.role!r}; "
                    f"use one of {', '.join(sorted(ROLES))}"
                )
    elif isinstance(prompt, str):
        if not prompt:
            raise InvalidArgument("the prompt is empty")
    elif not prompt.ids:
        raise InvalidArgument("the prompt has no token ids")


def _prompt_chars(prompt: Conversation | str | TokenPrompt) -> int:
    if isinstance(prompt, Conversation):
        return len(prompt.tools_json) + sum(
            len(m.content) + sum(len(c.arguments_json) for c in m.tool_calls)
            for m in prompt.messages
        )
    if isinstance(prompt, str):
        return len(prompt)
    return len(prompt.ids)


def _check_range(
    name: str, value: float | None, low: float, high: float, *, low_open: bool = False
) -> None:
    if value is None:
        return
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        bracket = "(" if low_open else "["
        raise InvalidArgument(f"{name} is {value}; it must be in {bracket}{low}, {high}]")


def validate_sampling(sampling: SamplingParams) -> None:
    _check_range("temperature", sampling.temperature, 0.0, 2.0)
    _check_range("top_p", sampling.top_p, 0.0, 1.0, low_open=True)
    _check_range("min_p", sampling.min_p, 0.0, 1.0)
    _check_range("repetition_penalty", sampling.repetition_penalty, 0.0, 2.0, low_open=True)
    _check_range("presence_penalty", sampling.presence_penalty, -2.0, 2.0)
    _check_range("frequency_penalty", sampling.frequency_penalty, -2.0, 2.0)
    if sampling.top_k is not None and sampling.top_k < 0:
        raise InvalidArgument(f"top_k is {sampling.top_k}; use 0 (off) or a positive number")


def validate_stopping(stopping: StoppingParams) -> None:
    if stopping.max_tokens is not None and stopping.max_tokens < 1:
        raise InvalidArgument("max_tokens must be at least 1 (leave it unset for the maximum)")
    if len(stopping.stop) > MAX_STOP_STRINGS:
        raise InvalidArgument(
            f"{len(stopping.stop)} stop strings given; at most {MAX_STOP_STRINGS} are allowed"
        )
    for index, stop in enumerate(stopping.stop):
        if not stop:
            raise InvalidArgument(f"stop[{index}] is empty; remove it")
        if len(stop) > MAX_STOP_CHARS:
            raise InvalidArgument(f"stop[{index}] is longer than {MAX_STOP_CHARS} characters")
