"""End to end with the real default model (SmolLM2-135M-Instruct): one load, one question.

Runs in the normal suite. The first run on a machine converts the packaged GGUF into the cache
(`RUNNER_CACHE_DIR`, default ~/.cache/model-runner; ~20-40 s); later runs load in seconds.
"""

from __future__ import annotations

import pytest

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    GrpcRunnerClient,
    StreamDelta,
    StreamFinished,
)
from tests.support.runner_process import running_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


async def test_default_model_knows_the_capital_of_france() -> None:
    args = ("--backend", "transformers", "--model", "smollm2-135m-instruct")
    with running_runner(*args, timeout_s=540) as runner:  # the defaults: float32, cores - 1
        client = GrpcRunnerClient(runner.address, default_timeout_s=120, connect_timeout_s=5)
        try:
            info = await client.get_model_info("smollm2-135m-instruct")
            assert info.backend == "transformers"
            events = [
                event
                async for event in client.chat_stream(
                    [ChatMessage("user", "What is the capital of France?")],
                    options=GenerationOptions(temperature=0.0, max_tokens=32),
                )
            ]
        finally:
            await client.close()
    finished = events[-1]
    assert isinstance(finished, StreamFinished)
    assert finished.reason == "eos"
    answer = "".join(e.text for e in events if isinstance(e, StreamDelta))
    assert "Paris" in answer, answer
