"""The transformers backend reuses the keys and values of earlier sequences (the prefix store).

Every check compares greedy tokens against transformers' own `generate` on the whole prompt
(nothing reused): a reused prefix must change how much is computed, never what comes out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from model_runner.backends.base import ModelSpec, SequenceParams
from model_runner.backends.transformers_backend import TransformersBackend
from model_runner.domain import (
    Conversation,
    GenerationRequest,
    Message,
    SamplingParams,
    StoppingParams,
)
from model_runner.engine import Engine
from model_runner.metrics import RunnerMetrics
from model_runner.settings import RunnerSettings
from tests.support.tiny_model import TinyModel

from .helpers import wait_until


@pytest.fixture(scope="module")
def hf_model(tiny_model: TinyModel) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model.model_dir, dtype=torch.float32)


def _reference(model: Any, prompt: list[int], n: int) -> list[int]:
    import torch

    ids = torch.tensor([prompt])
    # An explicit mask: generate() would otherwise mask every pad-token id (<|endoftext|>) that
    # a random model's earlier reply put into the prompt.
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=None,
    )
    return [int(i) for i in out[0][len(prompt) :]]


async def _backend(tiny_model: TinyModel, tmp_path: Path, mb: int) -> TransformersBackend:
    settings = RunnerSettings(
        dtype="float32", threads=1, cache_dir=tmp_path, max_batch_size=8, prefix_cache_mb=mb
    )
    backend = TransformersBackend(settings)
    await backend.load(ModelSpec("tiny", str(tiny_model.model_dir)))
    return backend


@pytest.fixture
async def backend(tiny_model: TinyModel, tmp_path: Path) -> AsyncIterator[TransformersBackend]:
    backend = await _backend(tiny_model, tmp_path, mb=64)
    yield backend
    await backend.unload()


def _params(prompt: list[int], max_tokens: int) -> SequenceParams:
    return SequenceParams(prompt, max_tokens, SamplingParams(temperature=0.0), 1, ignore_eos=True)


async def _run(backend: TransformersBackend, prompt: list[int], n: int) -> tuple[list[int], int]:
    """Greedy tokens and the cached prompt tokens the first step reported."""
    ids: list[int] = []
    cached = -1
    async for step in backend.generate(_params(prompt, n)):
        if cached < 0:
            cached = step.cached_prompt_tokens
        ids.extend(step.token_ids)
    return ids, cached


async def _chat(backend: TransformersBackend, *turns: str) -> list[int]:
    roles = ("user", "assistant")
    messages = tuple(Message(roles[i % 2], text) for i, text in enumerate(turns))
    return await backend.tokenize_conversation(Conversation(messages))


async def test_the_next_turn_of_a_chat_computes_only_what_is_new(
    backend: TransformersBackend, hf_model: Any
) -> None:
    first = await _chat(backend, "What is the capital of France?")
    reply, cached = await _run(backend, first, 30)
    assert cached == 0
    assert reply == _reference(hf_model, first, 30)
    # The next prompt repeats the first one and part of the reply, then goes its own way.
    second = [*first, *reply[:20], *await _chat(backend, "Tell me more about it.")]
    ids, cached = await _run(backend, second, 30)
    assert cached >= len(first) + 20
    assert ids == _reference(hf_model, second, 30)
    assert backend.stats().cached_prompt_tokens == cached
    assert backend.stats().prefix_cache_bytes > 0


async def test_rows_reusing_different_amounts_share_a_prefill_and_join_a_running_batch(
    backend: TransformersBackend, hf_model: Any
) -> None:
    base = await _chat(backend, "What is the capital of France?", "Paris.", "And of Italy?")
    reply, _ = await _run(backend, base, 24)
    long_reuse = [*base, *reply[:16], *await _chat(backend, "Why?")]
    short_reuse = [*base[:20], *await _chat(backend, "Hello there, how are you?")]
    fresh = await _chat(backend, "42 is the answer to everything.")
    # A sequence that is already decoding when the others are prefilled next to it.
    running = backend.generate(_params(fresh, 40))
    first_step = await anext(running)
    running_ids = list(first_step.token_ids)
    prompts = (long_reuse, short_reuse, [*fresh, *fresh])
    results = await asyncio.gather(*(_run(backend, p, 20) for p in prompts))
    async for step in running:
        running_ids.extend(step.token_ids)
    assert running_ids == _reference(hf_model, fresh, 40)
    for prompt, (ids, _) in zip(prompts, results, strict=True):
        assert ids == _reference(hf_model, prompt, 20)
    cached = [c for _, c in results]
    assert cached[0] >= len(base) + 16
    assert cached[1] >= 16
    assert cached[0] > cached[1]


async def test_a_cancelled_sequence_is_reused_too(
    backend: TransformersBackend, hf_model: Any
) -> None:
    prompt = await _chat(backend, "Tell me a long story about the sea.")
    stream = backend.generate(_params(prompt, 400))
    seen: list[int] = []
    async for step in stream:
        seen.extend(step.token_ids)
        if len(seen) >= 10:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_until(lambda: backend.stats().running == 0)
    await wait_until(lambda: backend.stats().prefix_cache_bytes > 0)
    again = [*prompt, *seen[:8], *await _chat(backend, "Go on.")]
    ids, cached = await _run(backend, again, 10)
    assert cached >= len(prompt) + 8
    assert ids == _reference(hf_model, again, 10)


async def test_with_the_store_off_nothing_is_reused(tiny_model: TinyModel, tmp_path: Path) -> None:
    backend = await _backend(tiny_model, tmp_path, mb=0)
    try:
        prompt = await _chat(backend, "What is the capital of France?")
        await _run(backend, prompt, 10)
        _, cached = await _run(backend, prompt, 10)
        assert cached == 0
        assert backend.stats().prefix_cache_bytes == 0
    finally:
        await backend.unload()


async def test_the_store_size_is_a_gauge_per_model(tiny_model: TinyModel, tmp_path: Path) -> None:
    settings = RunnerSettings(
        backend="transformers",
        model="tiny",
        model_source=str(tiny_model.model_dir),
        dtype="float32",
        threads=1,
        cache_dir=tmp_path,
        prefix_cache_mb=64,
    )
    metrics = RunnerMetrics()
    backend = TransformersBackend(settings)
    engine = Engine(backend, settings, metrics=metrics)
    await engine.start()
    try:
        request = GenerationRequest(
            prompt=Conversation((Message("user", "What is the capital of France?"),)),
            sampling=SamplingParams(temperature=0.0),
            stopping=StoppingParams(max_tokens=8, ignore_eos=True),
        )
        _ = [event async for event in engine.stream(request)]
        # The sequence leaves its keys and values in the store once it is out of the batch.
        await wait_until(lambda: backend.prefix_cache_bytes() > 0)
        text = generate_latest(metrics.registry).decode()
        line = next(x for x in text.splitlines() if x.startswith("runner_prefix_cache_bytes{"))
        assert line.startswith('runner_prefix_cache_bytes{model="tiny"}')
        assert float(line.split()[-1]) == backend.prefix_cache_bytes() > 0
    finally:
        await engine.close()
