"""End to end with the real default model (SmolLM2-135M-Instruct): one load, one question, on
each local backend.

Runs in the normal suite. The first run on a machine converts the packaged GGUF into the cache
(`RUNNER_CACHE_DIR`, default ~/.cache/model-runner; ~20-40 s); later runs load in seconds.
"""

from __future__ import annotations

import asyncio

import pytest

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    GrpcRunnerClient,
    StreamDelta,
    StreamFinished,
)
from model_runner.models.default_model import SMOLLM2, locate_packaged_gguf
from tests.support.extras import require_extra
from tests.support.runner_process import running_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


async def test_default_model_knows_the_capital_of_france() -> None:
    args = ("--backend", "transformers", "--model", "smollm2-135m-instruct")
    with running_runner(*args, timeout_s=540) as runner:  # the defaults: float32, cores - 1
        client = GrpcRunnerClient(runner.address, default_timeout_s=120, connect_timeout_s=5)
        try:
            info = await client.get_model_info("smollm2-135m-instruct")
            assert info.backend == "transformers"
            question = ChatMessage("user", "What is the capital of France?")
            answer, finished = await _reply(client, [question])
            # The next turn repeats the first: the prefix store supplies its keys and values.
            history = [question, ChatMessage("assistant", answer)]
            next_answer, next_finished = await _reply(
                client, [*history, ChatMessage("user", "What is the capital of Germany?")]
            )
        finally:
            await client.close()
    assert finished.reason == "eos"
    assert "Paris" in answer, answer
    assert "Berlin" in next_answer, next_answer
    assert next_finished.cached_prompt_tokens >= finished.prompt_tokens, next_finished


async def test_default_model_through_llamacpp_answers_with_several_chats_batched() -> None:
    # The packaged Q4_1 GGUF itself, several chats in one batch: on a VM that advertises AMX,
    # llama.cpp's AMX kernels killed the runner with SIGILL on the first prompt of more than
    # one token (RUNNER_LLAMACPP_EXTRA_BUFFERS=auto now leaves them off there).
    require_extra("llama_cpp", "llamacpp")
    source = str(locate_packaged_gguf(SMOLLM2))
    args = ("--backend", "llamacpp", "--model", "smollm2-135m-instruct", "--model-source", source)
    with running_runner(*args, timeout_s=120) as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=120, connect_timeout_s=5)
        try:
            answers = await asyncio.gather(
                *(_answer(client, "What is the capital of Germany?") for _ in range(3))
            )
            # A fourth chat takes the empty slot and copies the chat template's system prompt
            # from another slot's cells; the usage says how much came from the cache.
            _, finished = await _reply(
                client, [ChatMessage("user", "What is the capital of Italy?")]
            )
        finally:
            await client.close()
    for answer in answers:
        assert "Berlin" in answer, answer
    assert finished.cached_prompt_tokens >= 16, finished


async def _answer(client: GrpcRunnerClient, question: str) -> str:
    return (await _reply(client, [ChatMessage("user", question)]))[0]


async def _reply(
    client: GrpcRunnerClient, messages: list[ChatMessage]
) -> tuple[str, StreamFinished]:
    parts = []
    finished = None
    async for event in client.chat_stream(
        messages, options=GenerationOptions(temperature=0.0, max_tokens=32)
    ):
        if isinstance(event, StreamDelta):
            parts.append(event.text)
        elif isinstance(event, StreamFinished):
            finished = event
    assert finished is not None
    return "".join(parts), finished
