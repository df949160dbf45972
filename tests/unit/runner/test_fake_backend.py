from __future__ import annotations

from model_runner.backends.base import GenerationStep, ModelSpec, SequenceParams
from model_runner.backends.fake import FakeBackend, FakeBackendConfig
from model_runner.domain import Conversation, Message, SamplingParams


async def generate(
    backend: FakeBackend, text: str, *, max_tokens: int = 100, seed: int | None = None
) -> list[GenerationStep]:
    ids = await backend.tokenize_conversation(Conversation((Message("user", text),)))
    params = SequenceParams(ids, max_tokens, SamplingParams(seed=seed), seed=seed or 0)
    return [step async for step in backend.generate(params)]


async def loaded(**config: float) -> FakeBackend:
    backend = FakeBackend(FakeBackendConfig(**config))  # type: ignore[arg-type]
    await backend.load(ModelSpec("fake"))
    return backend


async def test_same_prompt_gives_the_same_reply() -> None:
    backend = await loaded(reply_tokens=8)
    first = await generate(backend, "tell me a story")
    second = await generate(backend, "tell me a story")
    assert first == second
    assert len(first) == 8
    assert first[-1].eos
    assert not any(step.eos for step in first[:-1])


async def test_a_different_prompt_or_seed_changes_the_reply() -> None:
    backend = await loaded(reply_tokens=8)
    base = await generate(backend, "tell me a story")
    assert await generate(backend, "something else entirely") != base
    assert await generate(backend, "tell me a story", seed=5) != base


async def test_echo_hook_replies_with_the_text() -> None:
    backend = await loaded()
    steps = await generate(backend, "/echo Hello  there, world")
    assert "".join(s.text for s in steps) == "Hello  there, world"
    assert [s.text for s in steps] == ["Hello", "  there,", " world"]


async def test_bytes_hook_streams_utf8_complete_text() -> None:
    backend = await loaded()
    steps = await generate(backend, "/bytes aé€")
    assert [s.text for s in steps] == ["a", "", "é", "", "", "€"]
    assert all(len(s.token_ids) == 1 for s in steps)


async def test_max_tokens_cuts_the_reply_without_eos() -> None:
    backend = await loaded(reply_tokens=50)
    steps = await generate(backend, "hello", max_tokens=3)
    assert len(steps) == 3
    assert not steps[-1].eos


async def test_tokenize_round_trips_through_token_strings() -> None:
    backend = await loaded()
    ids = await backend.tokenize("one two  three")
    assert backend.token_strings(ids) == ["one", " two", "  three"]
