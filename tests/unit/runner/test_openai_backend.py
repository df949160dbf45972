"""The openai backend against a real (fake) OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from model_runner.backends.base import GenerationStep, ModelSpec, SequenceParams
from model_runner.backends.openai_backend import OpenAIBackend
from model_runner.domain import Conversation, Message, SamplingParams
from model_runner.errors import EngineUnavailable, InvalidArgument, ModelNotFound
from model_runner.settings import RunnerSettings
from tests.support.fake_openai_server import FakeOpenAIState, fake_openai_server


@pytest.fixture
def upstream() -> Iterator[tuple[str, FakeOpenAIState]]:
    with fake_openai_server() as server:
        yield server


async def loaded(url: str, **options: str) -> OpenAIBackend:
    backend = OpenAIBackend(RunnerSettings())
    await backend.load(ModelSpec("mine", url, {"upstream_model": "upstream-model", **options}))
    return backend


@pytest.fixture
async def backend(upstream: tuple[str, FakeOpenAIState]) -> AsyncIterator[OpenAIBackend]:
    backend = await loaded(upstream[0])
    yield backend
    await backend.unload()


def conversation(text: str) -> Conversation:
    return Conversation((Message("system", "Be brief."), Message("user", text)))


async def run(backend: OpenAIBackend, params: SequenceParams) -> list[GenerationStep]:
    return [step async for step in backend.generate(params)]


def params_for(prompt: Conversation | str, max_tokens: int = 50) -> SequenceParams:
    return SequenceParams((0,), max_tokens, SamplingParams(temperature=0.5), 7, prompt=prompt)


async def test_load_reads_context_and_uses_the_upstream_tokenizer(
    upstream: tuple[str, FakeOpenAIState],
) -> None:
    backend = OpenAIBackend(RunnerSettings())
    info = await backend.load(ModelSpec("mine", upstream[0], {"upstream_model": "upstream-model"}))
    assert (info.backend, info.max_context_tokens, info.aliases) == (
        "openai",
        2048,
        ("upstream-model",),
    )
    assert backend.tokenizer_mode == "vllm"
    assert len(await backend.tokenize("one two three")) == 3
    ids = await backend.tokenize_conversation(conversation("hello there"))
    assert len(ids) == 6  # "<system> Be brief. <user> hello there", word by word
    sent = upstream[1].requests[-1]
    assert sent["path"] == "/tokenize"
    assert sent["messages"][1] == {"role": "user", "content": "hello there"}
    await backend.unload()


async def test_chat_streams_deltas_and_forwards_sampling(
    backend: OpenAIBackend, upstream: tuple[str, FakeOpenAIState]
) -> None:
    steps = await run(backend, params_for(conversation("echo: Paris is lovely")))
    assert "".join(step.text for step in steps) == "Paris is lovely"
    assert sum(len(step.token_ids) for step in steps) == 3
    sent = upstream[1].requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert (sent["model"], sent["stream"], sent["temperature"], sent["seed"]) == (
        "upstream-model",
        True,
        0.5,
        7,
    )
    assert "top_k" not in sent  # extensions only when the caller set them


async def test_raw_prompt_uses_completions_and_length_is_reported(
    backend: OpenAIBackend, upstream: tuple[str, FakeOpenAIState]
) -> None:
    steps = await run(backend, params_for("a raw prompt", max_tokens=2))
    assert upstream[1].requests[-1]["path"] == "/v1/completions"
    assert "".join(step.text for step in steps) == "w0 w1"
    assert sum(len(step.token_ids) for step in steps) == 2
    assert not any(step.eos for step in steps)  # cut by max_tokens: LENGTH, not EOS


async def test_without_an_upstream_tokenizer_counts_are_approximate() -> None:
    with fake_openai_server(FakeOpenAIState(tokenizer=False)) as (url, _):
        backend = await loaded(url)
        try:
            assert backend.tokenizer_mode == "approximate"
            assert len(await backend.tokenize("x" * 40)) == 10  # 4 bytes per token
        finally:
            await backend.unload()


async def test_closing_the_stream_disconnects_from_the_upstream() -> None:
    state = FakeOpenAIState(reply_words=1000, chunk_delay_s=0.01)
    with fake_openai_server(state) as (url, state):
        backend = await loaded(url)
        steps = backend.generate(params_for(conversation("long"), max_tokens=1000))
        assert (await anext(steps)).text == "w0"
        await steps.aclose()  # type: ignore[attr-defined]
        assert await asyncio.to_thread(state.disconnected.wait, 10)
        await backend.unload()


async def test_unknown_upstream_model_is_not_found(upstream: tuple[str, FakeOpenAIState]) -> None:
    backend = OpenAIBackend(RunnerSettings())
    with pytest.raises(ModelNotFound, match="upstream_model"):
        await backend.load(ModelSpec("gpt-9", upstream[0]))


async def test_bad_source_and_dead_upstream_are_clear_errors() -> None:
    backend = OpenAIBackend(RunnerSettings())
    with pytest.raises(InvalidArgument, match="http"):
        await backend.load(ModelSpec("m", "/not/a/url"))
    with pytest.raises(EngineUnavailable, match="cannot reach"):
        await backend.load(ModelSpec("m", "http://127.0.0.1:1/v1"))
