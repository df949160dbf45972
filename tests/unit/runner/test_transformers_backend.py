"""The transformers backend's real loading, batching and decoding code, on the tiny model.

References come from transformers' own greedy `generate` on the same model, one prompt at a
time: whatever our scheduler does (batching, joining, leaving) must produce the same tokens.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from model_runner.backends import transformers_backend
from model_runner.backends.base import ModelSpec, SequenceParams
from model_runner.backends.transformers_backend import TransformersBackend
from model_runner.domain import (
    Conversation,
    Delta,
    Finished,
    FinishReason,
    GenerationRequest,
    Message,
    SamplingParams,
    Started,
    StoppingParams,
)
from model_runner.engine import Engine
from model_runner.errors import ModelNotFound
from model_runner.settings import RunnerSettings
from tests.support.tiny_model import TinyModel

from .helpers import wait_until

PROMPTS = ("What is the capital of France?", "Hello!", "Tell me more about it.", "42")


@pytest.fixture(scope="module")
def reference(tiny_model: TinyModel) -> dict[str, list[int]]:
    """Greedy continuations (40 tokens, EOS ignored) from transformers' own generate()."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(tiny_model.model_dir, dtype=torch.float32)
    out: dict[str, list[int]] = {}
    for text in PROMPTS:
        ids = _template(tokenizer, text)
        generated = model.generate(
            torch.tensor([ids]), max_new_tokens=40, do_sample=False, eos_token_id=None
        )
        out[text] = [int(i) for i in generated[0][len(ids) :]]
    return out


def _template(tokenizer: Any, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    return [int(i) for i in ids]


@pytest.fixture
async def backend(tiny_model: TinyModel, tmp_path: Path) -> AsyncIterator[TransformersBackend]:
    settings = RunnerSettings(dtype="float32", threads=1, cache_dir=tmp_path, max_batch_size=8)
    backend = TransformersBackend(settings)
    await backend.load(ModelSpec("tiny", str(tiny_model.model_dir)))
    yield backend
    await backend.unload()


async def _prompt(backend: TransformersBackend, text: str) -> list[int]:
    return await backend.tokenize_conversation(Conversation((Message("user", text),)))


def _params(prompt: list[int], max_tokens: int = 40, **fields: Any) -> SequenceParams:
    return SequenceParams(
        prompt, max_tokens, SamplingParams(temperature=0.0), seed=1, ignore_eos=True, **fields
    )


async def _run(backend: TransformersBackend, params: SequenceParams) -> tuple[list[int], str]:
    ids: list[int] = []
    text: list[str] = []
    async for step in backend.generate(params):
        ids.extend(step.token_ids)
        text.append(step.text)
    return ids, "".join(text)


async def test_load_describes_the_model(
    backend: TransformersBackend, tiny_model: TinyModel
) -> None:
    info = await backend.load(ModelSpec("tiny", str(tiny_model.model_dir)))
    assert info.backend == "transformers"
    assert info.max_context_tokens == tiny_model.context_tokens
    assert info.has_chat_template
    assert info.dtype == "float32"
    assert info.memory_bytes > 0


async def test_conversation_uses_the_models_chat_template(
    backend: TransformersBackend, tiny_model: TinyModel
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.model_dir)
    assert await _prompt(backend, "Hello!") == _template(tokenizer, "Hello!")


async def test_greedy_output_matches_transformers_generate(
    backend: TransformersBackend, reference: dict[str, list[int]]
) -> None:
    ids, _ = await _run(backend, _params(await _prompt(backend, PROMPTS[0])))
    assert ids == reference[PROMPTS[0]]


async def test_text_is_utf8_complete_and_adds_up(
    backend: TransformersBackend, tiny_model: TinyModel
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.model_dir)
    steps = [s async for s in backend.generate(_params(await _prompt(backend, "café"), 60))]
    ids = [i for s in steps for i in s.token_ids]
    assert "".join(s.text for s in steps) == tokenizer.decode(ids, skip_special_tokens=True)
    # Hold-back: a step never ends inside a character (that would show as U+FFFD) unless the
    # finished text has U+FFFD at that very place (the random model emits stray bytes).
    final = tokenizer.decode(ids, skip_special_tokens=True)
    done = 0
    for step in steps[:-1]:
        done += len(step.text)
        if step.text.endswith("\ufffd"):
            assert final[done - 1] == "\ufffd"


async def test_concurrent_sequences_share_forward_passes_and_stay_exact(
    backend: TransformersBackend, reference: dict[str, list[int]]
) -> None:
    prompts = [await _prompt(backend, text) for text in PROMPTS]
    before = backend.stats()
    results = await asyncio.gather(*(_run(backend, _params(p)) for p in prompts))
    after = backend.stats()
    for text, (ids, _) in zip(PROMPTS, results, strict=True):
        assert ids == reference[text]
    tokens = 40 * len(PROMPTS)
    decoded = after.decoded_tokens - before.decoded_tokens
    passes = after.decode_passes - before.decode_passes
    assert after.max_decode_batch == len(PROMPTS)
    assert passes < decoded < tokens + 1  # several sequences per pass
    assert after.running == 0


async def test_sequences_join_and_leave_a_running_batch(
    backend: TransformersBackend, reference: dict[str, list[int]]
) -> None:
    long_prompt = await _prompt(backend, PROMPTS[0])
    first = backend.generate(_params(long_prompt, 40))
    ids = list((await anext(first)).token_ids)
    # Joins mid-way (different length, so left padding differs) and leaves early (10 tokens).
    short_ids, _ = await _run(backend, _params(await _prompt(backend, PROMPTS[1]), 10))
    async for step in first:
        ids.extend(step.token_ids)
    assert short_ids == reference[PROMPTS[1]][:10]
    assert ids == reference[PROMPTS[0]]


async def test_cancelled_stream_leaves_the_batch(backend: TransformersBackend) -> None:
    stream = backend.generate(_params(await _prompt(backend, "Hello!"), 400))
    await anext(stream)
    await wait_until(lambda: backend.stats().running == 1)
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_until(lambda: backend.stats().running == 0 and backend.stats().cache_tokens == 0)


async def test_eos_and_stop_token_ids_end_the_sequence(backend: TransformersBackend) -> None:
    prompt = await _prompt(backend, PROMPTS[0])
    ids, _ = await _run(backend, _params(prompt, 20))
    stop_at = ids[5]
    params = SequenceParams(
        prompt, 20, SamplingParams(temperature=0.0), 1, stop_token_ids=frozenset({stop_at})
    )
    steps = [s async for s in backend.generate(params)]
    got = [i for s in steps for i in s.token_ids]
    assert got == ids[: ids.index(stop_at)]
    assert steps[-1].eos


async def test_seeded_sampling_is_reproducible(backend: TransformersBackend) -> None:
    prompt = await _prompt(backend, "Hello!")
    sampling = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, repetition_penalty=1.1)
    params = SequenceParams(prompt, 30, sampling, seed=7, ignore_eos=True)
    a, b = await asyncio.gather(_run(backend, params), _run(backend, params))
    assert a == b
    other, _ = await _run(backend, SequenceParams(prompt, 30, sampling, 8, ignore_eos=True))
    assert other != a[0]


async def test_gguf_source_is_converted_once_and_decodes_the_same(
    tiny_model: TinyModel, tmp_path: Path, reference: dict[str, list[int]]
) -> None:
    settings = RunnerSettings(dtype="float32", threads=1, cache_dir=tmp_path)
    backend = TransformersBackend(settings)
    try:
        await backend.load(ModelSpec("tiny-gguf", str(tiny_model.gguf_path)))
        converted = await asyncio.to_thread(
            lambda: list(tmp_path.glob("converted/*/*.safetensors"))
        )
        assert converted
        ids, _ = await _run(backend, _params(await _prompt(backend, PROMPTS[2])))
        # GGUF stores float32 here, so the converted model is the same model exactly.
        assert ids == reference[PROMPTS[2]]
    finally:
        await backend.unload()


async def test_missing_source_is_model_not_found(tmp_path: Path) -> None:
    backend = TransformersBackend(RunnerSettings(cache_dir=tmp_path))
    with pytest.raises(ModelNotFound, match="does not exist"):
        await backend.load(ModelSpec("x", str(tmp_path / "nope.gguf")))
    with pytest.raises(ModelNotFound, match=r"without config\.json"):
        await backend.load(ModelSpec("x", str(tmp_path)))


@pytest.mark.parametrize("native_bf16", [False, True], ids=["no-bf16", "bf16"])
async def test_auto_settings_on_cpu_pick_the_dtype_and_leave_a_core_free(
    tiny_model: TinyModel,
    tmp_path: Path,
    reference: dict[str, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    native_bf16: bool,
) -> None:
    import torch

    def threads_of_a_new_thread() -> int:
        # torch's thread count is per OS thread once used; a new thread (like the engine's)
        # starts from the process-wide value that the last set_num_threads stored.
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return seen[0]

    monkeypatch.setattr(transformers_backend, "cpu_has_native_bf16", lambda: native_bf16)
    backend = TransformersBackend(RunnerSettings(cache_dir=tmp_path))  # dtype/threads auto
    try:
        info = await backend.load(ModelSpec("tiny", str(tiny_model.model_dir)))
        # bf16 only where the CPU runs it natively; elsewhere torch emulates it, slower.
        assert info.dtype == ("bfloat16" if native_bf16 else "float32")
        # One core stays free for the event loop and gRPC (unless there is only one).
        assert threads_of_a_new_thread() <= max((os.cpu_count() or 1) - 1, 1)
        ids, _ = await _run(backend, _params(await _prompt(backend, PROMPTS[0])))
        if native_bf16:  # bf16 may break near-ties differently from the float32 reference
            assert ids
        else:
            assert ids == reference[PROMPTS[0]]
    finally:
        await backend.unload()


async def test_engine_stop_string_across_tokens(
    backend: TransformersBackend, tiny_model: TinyModel
) -> None:
    settings = RunnerSettings(
        backend="transformers",
        model="tiny",
        model_source=str(tiny_model.model_dir),
        dtype="float32",
    )
    engine = Engine(backend, settings)
    await engine.start()
    try:
        request = GenerationRequest(
            prompt=Conversation((Message("user", PROMPTS[0]),)),
            sampling=SamplingParams(temperature=0.0),
            stopping=StoppingParams(max_tokens=30, ignore_eos=True),
            output=_output_with_ids(),
        )
        events = [e async for e in engine.stream(request)]
        deltas = [e for e in events if isinstance(e, Delta)]
        full = "".join(d.text for d in deltas)
        # A stop string that starts inside one token's text and ends inside a later one.
        pieces = [d.text for d in deltas if d.text]
        start = len(pieces[0]) + len(pieces[1]) - 1
        stop = full[start : start + len(pieces[2]) + 2]
        stopped = GenerationRequest(
            prompt=request.prompt,
            sampling=request.sampling,
            stopping=StoppingParams(max_tokens=30, ignore_eos=True, stop=(stop,)),
        )
        events = [e async for e in engine.stream(stopped)]
        assert isinstance(events[0], Started)
        finished = events[-1]
        assert isinstance(finished, Finished)
        assert finished.reason is FinishReason.STOP_SEQUENCE
        assert "".join(e.text for e in events if isinstance(e, Delta)) == full[: full.index(stop)]
    finally:
        await engine.close()


def _output_with_ids() -> Any:
    from model_runner.domain import OutputParams

    return OutputParams(return_token_ids=True)


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"avx2", "fma"}, False),
        ({"avx512f", "avx512bw"}, False),
        ({"avx512_bf16"}, True),
        ({"amx_bf16"}, True),
    ],
)
def test_bf16_is_native_with_amx_or_avx512_bf16(
    flags: set[str], native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transformers_backend, "cpu_flags", lambda: frozenset(flags))
    assert transformers_backend.cpu_has_native_bf16() is native
