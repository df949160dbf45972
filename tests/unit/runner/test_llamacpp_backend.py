"""The llamacpp backend's real loading and decoding code, on the tiny GGUF the tests build."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from model_runner.backends.base import GenerationStep, ModelSpec, SequenceParams
from model_runner.backends.llamacpp_backend import LlamaCppBackend
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
from tests.support.extras import require_extra
from tests.support.tiny_model import TinyModel, build_tiny_model

from .helpers import chat


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    require_extra("llama_cpp", "llamacpp")
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


class DecodeGate:
    """`llama_decode` that waits for the test's permission once the test closes the gate:
    which sequence is still decoding when another one joins must not depend on how fast the
    tiny model runs on this machine."""

    def __init__(self, decode: Callable[..., int]) -> None:
        self._decode = decode
        self._cond = threading.Condition()
        self._allowed: int | None = None  # None: open
        self.blocked = 0  # decode calls waiting for permission now

    def close(self, *, allow: int = 0) -> None:
        with self._cond:
            self._allowed = allow

    def open(self) -> None:
        with self._cond:
            self._allowed = None
            self._cond.notify_all()

    def __call__(self, *args: Any) -> int:
        with self._cond:
            self.blocked += 1
            try:
                if not self._cond.wait_for(lambda: self._allowed != 0, timeout=30):
                    raise TimeoutError("the test never allowed this llama_decode call")
            finally:
                self.blocked -= 1
            if self._allowed is not None:
                self._allowed -= 1
        return self._decode(*args)


@pytest.fixture
def decode_gate(tiny: TinyModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[DecodeGate]:
    import llama_cpp

    gate = DecodeGate(llama_cpp.llama_decode)
    monkeypatch.setattr(llama_cpp, "llama_decode", gate)
    yield gate
    gate.open()


@pytest.fixture
async def engine(tiny: TinyModel) -> AsyncIterator[Engine]:
    settings = RunnerSettings(backend="llamacpp", model="tiny", model_source=str(tiny.gguf_path))
    engine = Engine(LlamaCppBackend(settings), settings)
    await engine.start()
    yield engine
    await engine.close()


def greedy(text: str, max_tokens: int = 12, **fields: object) -> GenerationRequest:
    return chat(
        text,
        sampling=SamplingParams(temperature=0.0),
        stopping=StoppingParams(max_tokens=max_tokens),
        **fields,
    )


async def reply(engine: Engine, request: GenerationRequest) -> tuple[str, Finished]:
    events = [event async for event in engine.stream(request)]
    assert isinstance(events[0], Started)
    finished = events[-1]
    assert isinstance(finished, Finished)
    return "".join(e.text for e in events if isinstance(e, Delta)), finished


async def test_load_describes_the_gguf(tiny: TinyModel) -> None:
    backend = LlamaCppBackend(RunnerSettings())
    one_sequence = {"n_seq_max": "1"}
    info = await backend.load(ModelSpec("tiny", str(tiny.gguf_path.parent), one_sequence))
    try:
        assert info.max_context_tokens == tiny.context_tokens
        assert (info.backend, info.quantization, info.has_chat_template) == (
            "llamacpp",
            "F32",
            True,
        )
        assert info.memory_bytes > 0
        ids = await backend.tokenize("The capital of France")
        assert "".join(backend.token_strings(ids)).endswith("The capital of France")
    finally:
        await backend.unload()


async def test_the_context_is_split_across_parallel_sequences(tiny: TinyModel) -> None:
    backend = LlamaCppBackend(RunnerSettings(llamacpp_n_seq_max=4))
    info = await backend.load(ModelSpec("tiny", str(tiny.gguf_path)))
    try:
        # 512 cells / 4 sequences = 128 each, which llama.cpp rounds up to 256.
        assert info.max_context_tokens == 256
    finally:
        await backend.unload()


async def test_greedy_generation_is_deterministic_and_uses_the_template(engine: Engine) -> None:
    first, finished = await reply(engine, greedy("What is the capital of France?"))
    again, _ = await reply(engine, greedy("What is the capital of France?"))
    assert first == again
    assert finished.reason in (FinishReason.LENGTH, FinishReason.EOS)
    assert finished.usage.completion_tokens >= 1
    # The prompt went through the GGUF's ChatML template.
    ids, _ = await engine.tokenize("", chat("hi").prompt)  # type: ignore[arg-type]
    assert ids[0] == 1  # <|im_start|>


PROMPTS = ("Hello!", "Tell me more about it.", "What is the capital of France?", "Numbers")


async def test_concurrent_greedy_requests_match_one_at_a_time(engine: Engine) -> None:
    alone = [(await reply(engine, greedy(p)))[0] for p in PROMPTS]
    together = await asyncio.gather(*(reply(engine, greedy(p)) for p in PROMPTS))
    assert [text for text, _ in together] == alone


async def _tokens(backend: LlamaCppBackend, params: SequenceParams) -> list[int]:
    return [t async for step in backend.generate(params) for t in step.token_ids]


async def _wait_until(condition: Callable[[], bool]) -> None:
    # The counts live on the decode thread, which cannot set an asyncio.Event: poll, with a
    # deadline.
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_concurrent_sequences_share_decode_calls(tiny: TinyModel) -> None:
    backend = LlamaCppBackend(RunnerSettings(llamacpp_n_seq_max=4))
    await backend.load(ModelSpec("tiny", str(tiny.gguf_path)))
    try:
        prompts = [await backend.tokenize(p) for p in PROMPTS[:3]]
        requests = [
            SequenceParams(ids, 10, SamplingParams(temperature=0.0), seed=0, ignore_eos=True)
            for ids in prompts
        ]
        alone = [await _tokens(backend, r) for r in requests]
        before = backend.batch_stats()
        backend.hold_steps(True)  # line the three sequences up before the first step
        tasks = [asyncio.create_task(_tokens(backend, r)) for r in requests]
        await _wait_until(lambda: backend.waiting_sequences() == 3)
        backend.hold_steps(False)
        together = await asyncio.gather(*tasks)
        after = backend.batch_stats()
    finally:
        await backend.unload()
    assert together == alone
    assert [len(tokens) for tokens in together] == [10, 10, 10]
    calls = after.decode_calls - before.decode_calls
    steps = after.sequence_steps - before.sequence_steps
    # One prefill step and 9 decode steps for all three together, not 3 x 10 calls.
    assert after.max_sequences == 3
    assert calls == 10
    assert steps == 30


async def test_a_closed_sequence_frees_its_slot_for_a_waiting_one(
    tiny: TinyModel, decode_gate: DecodeGate
) -> None:
    backend = LlamaCppBackend(RunnerSettings(llamacpp_n_seq_max=1))
    await backend.load(ModelSpec("tiny", str(tiny.gguf_path)))
    try:
        ids = await backend.tokenize("Hello!")
        sampling = SamplingParams(temperature=0.0)
        before = backend.batch_stats()
        decode_gate.close(allow=1)  # the first sequence's prompt, then it waits in its next step
        first = cast(
            AsyncGenerator[GenerationStep, None],
            backend.generate(SequenceParams(ids, 200, sampling, seed=0, ignore_eos=True)),
        )
        await anext(first)
        second = asyncio.create_task(
            _tokens(backend, SequenceParams(ids, 3, sampling, seed=0, ignore_eos=True))
        )
        await _wait_until(lambda: backend.waiting_sequences() == 1)
        assert not second.done()
        await first.aclose()  # leaves at the next step; the waiting sequence takes the slot
        decode_gate.open()
        assert len(await asyncio.wait_for(second, 30)) == 3
        after = backend.batch_stats()
    finally:
        await backend.unload()
    # The first sequence left after a step or two, far from its 200 tokens.
    assert after.sequence_steps - before.sequence_steps <= 6


async def test_a_cancelled_stream_frees_the_model_for_the_next(engine: Engine) -> None:
    request = greedy("Hello!", max_tokens=200)
    stream = engine.stream(request)
    assert isinstance(await anext(stream), Started)
    await anext(stream)
    await stream.aclose()
    _, finished = await asyncio.wait_for(reply(engine, greedy("Hello!", max_tokens=3)), 30)
    assert finished.usage.completion_tokens <= 3


async def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    require_extra("llama_cpp", "llamacpp")
    backend = LlamaCppBackend(RunnerSettings())
    with pytest.raises(ModelNotFound, match="GGUF"):
        await backend.load(ModelSpec("x", str(tmp_path / "missing.gguf")))


async def test_a_new_chat_leaves_another_chats_cached_turn_alone(tiny: TinyModel) -> None:
    # Two slots. Chat A runs; chat B shares the start of A's prompt (as chats share a chat
    # template and system prompt) but is not A's next turn: it takes the empty slot, so A's
    # next turn finds its whole previous turn cached.
    async with _two_slots(tiny) as backend:
        a = await backend.tokenize(PROMPTS[2])
        b = a[: len(a) // 2] + await backend.tokenize(PROMPTS[1])
        a_reply = await _tokens(backend, _greedy_params(a, 6))
        await _tokens(backend, _greedy_params(b, 6))
        next_turn = a + a_reply + await backend.tokenize(PROMPTS[0])
        _, reused = await _reused_by(backend, next_turn, 2)
    # The cache holds A's prompt and every reply token but the last (sampled, never decoded).
    assert reused == len(a) + len(a_reply) - 1


SYSTEM = "You are a helpful assistant. Answer briefly and kindly. " * 3


def _shared_prefix(a: list[int], b: list[int]) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


@contextlib.asynccontextmanager
async def _two_slots(tiny: TinyModel) -> AsyncIterator[LlamaCppBackend]:
    backend = LlamaCppBackend(RunnerSettings(llamacpp_n_seq_max=2))
    await backend.load(ModelSpec("tiny", str(tiny.gguf_path)))
    try:
        yield backend
    finally:
        await backend.unload()


def _greedy_params(prompt: list[int], max_tokens: int) -> SequenceParams:
    return SequenceParams(prompt, max_tokens, SamplingParams(temperature=0.0), 0, ignore_eos=True)


async def _reused_by(
    backend: LlamaCppBackend, prompt: list[int], max_tokens: int
) -> tuple[list[int], int]:
    """The greedy reply to `prompt` and how many of its prompt tokens came from the cache (the
    first step's `cached_prompt_tokens`)."""
    steps = [step async for step in backend.generate(_greedy_params(prompt, max_tokens))]
    return [t for step in steps for t in step.token_ids], steps[0].cached_prompt_tokens


async def _fresh_reply(tiny: TinyModel, prompt: list[int], max_tokens: int) -> list[int]:
    """The greedy reply of a backend whose cache holds nothing."""
    async with _two_slots(tiny) as backend:
        return await _tokens(backend, _greedy_params(prompt, max_tokens))


async def test_a_new_chat_copies_a_shared_system_prompt_from_another_slot(
    tiny: TinyModel,
) -> None:
    # Chat B shares a long system prompt with chat A's finished turn but is not its next
    # turn: B takes the empty slot and copies A's cells for the shared prefix instead of
    # prefilling it; A's cache stays whole, and B answers as it would on an empty cache.
    async with _two_slots(tiny) as backend:
        system = await backend.tokenize(SYSTEM)
        assert len(system) >= 20
        a = system + await backend.tokenize(PROMPTS[2])
        b = system + await backend.tokenize(PROMPTS[0])
        # A's turn is long enough past the shared prefix not to pass for B's previous turn.
        a_reply = await _tokens(backend, _greedy_params(a, 24))
        b_reply, b_reused = await _reused_by(backend, b, 6)
        next_turn = a + a_reply + await backend.tokenize(PROMPTS[1])
        _, a_reused = await _reused_by(backend, next_turn, 2)
    assert b_reused == _shared_prefix(a, b) >= len(system)
    assert b_reply == await _fresh_reply(tiny, b, 6)
    assert a_reused == len(a) + len(a_reply) - 1


async def test_a_new_chat_copies_a_shared_prefix_from_a_running_sequence(
    tiny: TinyModel, decode_gate: DecodeGate
) -> None:
    async with _two_slots(tiny) as backend:
        system = await backend.tokenize(SYSTEM)
        a = system + await backend.tokenize(PROMPTS[2])
        b = system + await backend.tokenize(PROMPTS[3])
        decode_gate.close(allow=1)  # A's prompt, then A waits in its next step
        a_steps = backend.generate(_greedy_params(a, 40))
        await anext(a_steps)  # A's prompt is in its slot's cells and A is decoding
        # B must join while A's step waits at the gate: a B that joins before the decode
        # thread reaches it is taken into that step instead and never waits (a busy machine).
        await _wait_until(lambda: decode_gate.blocked == 1)
        b_task = asyncio.create_task(_reused_by(backend, b, 6))
        await _wait_until(lambda: backend.waiting_sequences() == 1)
        decode_gate.open()  # B starts next to the running A
        b_reply, b_reused = await b_task
        a_rest = [t async for step in a_steps for t in step.token_ids]
    assert b_reused == _shared_prefix(a, b) >= len(system)
    assert b_reply == await _fresh_reply(tiny, b, 6)
    assert len(a_rest) == 39


async def test_the_usage_reports_prompt_tokens_found_in_the_cache(engine: Engine) -> None:
    first = greedy(PROMPTS[2])
    answer, finished = await reply(engine, first)
    assert finished.usage.cached_prompt_tokens == 0  # nothing was cached yet
    history = (
        Message("user", PROMPTS[2]),
        Message("assistant", answer),
        Message("user", PROMPTS[1]),
    )
    _, next_finished = await reply(engine, replace(first, prompt=Conversation(history)))
    # The next turn finds the first turn's prompt (at least) in its slot's cache.
    assert finished.usage.prompt_tokens <= next_finished.usage.cached_prompt_tokens
    assert next_finished.usage.cached_prompt_tokens < next_finished.usage.prompt_tokens
