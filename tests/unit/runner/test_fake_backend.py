from __future__ import annotations

import asyncio

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


async def _token_times(
    backend: FakeBackend, text: str, after: asyncio.Event | None = None
) -> tuple[float, list[float]]:
    """When the stream asked for its first step, and when each step arrived (loop time)."""
    loop = asyncio.get_running_loop()
    ids = await backend.tokenize_conversation(Conversation((Message("user", text),)))
    params = SequenceParams(ids, 100, SamplingParams(), seed=0)
    started = loop.time()
    times = []
    async for _ in backend.generate(params):
        times.append(loop.time())
        if after is not None:
            after.set()
    return started, times


async def test_paced_streams_step_together_like_a_batch() -> None:
    """A stream that arrives between two steps of a running one joins its step clock: its
    tokens arrive in the same instants, the first one no sooner than one interval after it
    arrived (its prefill), as in a batching engine."""
    backend = await loaded(tokens_per_second=50, reply_tokens=6)
    first_token = asyncio.Event()
    running = asyncio.create_task(_token_times(backend, "/long 8", first_token))
    await first_token.wait()
    await asyncio.sleep(0.007)  # arrive off the step grid
    joined_at, joined = await _token_times(backend, "/long 3")
    _, steps = await running
    assert len(joined) == 3
    assert joined[0] - joined_at >= 0.02 - 0.001
    for t in joined:
        assert min(abs(t - s) for s in steps) < 0.002, (t, steps)


async def test_per_stream_clock_paces_each_stream_from_its_own_start() -> None:
    backend = FakeBackend(FakeBackendConfig(tokens_per_second=50, step_clock="per_stream"))
    await backend.load(ModelSpec("fake"))
    first_token = asyncio.Event()
    running = asyncio.create_task(_token_times(backend, "/long 8", first_token))
    await first_token.wait()
    await asyncio.sleep(0.007)
    joined_at, joined = await _token_times(backend, "/long 3")
    _, steps = await running
    # Its own timer: off the other stream's steps by the offset it arrived at.
    assert all(min(abs(t - s) for s in steps) > 0.002 for t in joined), (joined, steps)
    assert joined[0] - joined_at < 0.02 + 0.015
