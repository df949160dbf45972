"""Engine behaviour on the happy path and at generation limits."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from model_runner.domain import (
    Conversation,
    Delta,
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    OutputParams,
    Started,
    StoppingParams,
    TokenPrompt,
)
from model_runner.errors import InvalidArgument

from .helpers import EngineFactory, chat, collect


def text_of(events: Sequence[GenerationEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def finished(events: Sequence[GenerationEvent]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished)
    return last


async def test_stream_is_started_deltas_finished_with_usage(make_engine: EngineFactory) -> None:
    engine = await make_engine(fake_reply_tokens=5)
    events = await collect(engine, chat("hello", request_id="r1"))
    started = events[0]
    assert isinstance(started, Started)
    assert started.request_id == "r1"
    assert started.model == "fake"
    deltas = [e for e in events if isinstance(e, Delta)]
    assert [d.completion_tokens for d in deltas] == [1, 2, 3, 4, 5]
    end = finished(events)
    assert end.reason is FinishReason.EOS
    assert end.usage.completion_tokens == 5
    assert end.usage.prompt_tokens == started.prompt_tokens > 0
    assert end.usage.total_ns >= end.usage.queue_ns + end.usage.ttft_ns


async def test_runner_assigns_an_id_when_none_is_given(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    events = await collect(engine, chat("hello"))
    assert isinstance(events[0], Started)
    assert len(events[0].request_id) >= 16


async def test_stop_string_across_tokens_ends_the_stream(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    request = chat("/chars abcSTOPdef", stopping=StoppingParams(stop=("STOP",)))
    events = await collect(engine, request)
    assert text_of(events) == "abc"
    assert finished(events).reason is FinishReason.STOP_SEQUENCE
    assert finished(events).stop_sequence == "STOP"


async def test_held_back_stop_prefix_is_emitted_at_eos(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    events = await collect(engine, chat("/chars abcST", stopping=StoppingParams(stop=("STOP",))))
    assert text_of(events) == "abcST"
    assert finished(events).reason is FinishReason.EOS


async def test_multibyte_text_survives_byte_tokens(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    events = await collect(engine, chat("/bytes Grüße 世界 🎉"))
    assert text_of(events) == "Grüße 世界 🎉"
    assert all("\ufffd" not in e.text for e in events if isinstance(e, Delta))


async def test_max_tokens_gives_length(make_engine: EngineFactory) -> None:
    engine = await make_engine(fake_reply_tokens=50)
    events = await collect(engine, chat("hi", stopping=StoppingParams(max_tokens=3)))
    assert finished(events).reason is FinishReason.LENGTH
    assert finished(events).usage.completion_tokens == 3


async def test_full_context_gives_context_length(make_engine: EngineFactory) -> None:
    engine = await make_engine(fake_context_tokens=16, fake_reply_tokens=50)
    events = await collect(engine, chat("one two three"))
    end = finished(events)
    assert end.reason is FinishReason.CONTEXT_LENGTH
    assert end.usage.prompt_tokens + end.usage.completion_tokens == 16


async def test_prompt_longer_than_context_is_invalid(make_engine: EngineFactory) -> None:
    engine = await make_engine(fake_context_tokens=16)
    with pytest.raises(InvalidArgument, match="context"):
        await collect(engine, chat(" ".join(["word"] * 40)))


async def test_generate_from_text_and_token_ids(make_engine: EngineFactory) -> None:
    engine = await make_engine(fake_reply_tokens=4)
    from_text = await collect(engine, GenerationRequest(prompt="/echo a b"))
    assert text_of(from_text) == "a b"
    ids = (300, 301)
    options = OutputParams(return_token_ids=True)
    from_ids = await collect(engine, GenerationRequest(prompt=TokenPrompt(ids), output=options))
    assert finished(from_ids).usage.prompt_tokens == 2
    assert all(e.token_ids for e in from_ids if isinstance(e, Delta))


async def test_backend_failure_after_started_is_finished_error(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    events = await collect(engine, chat("/fail 2"))
    end = finished(events)
    assert end.reason is FinishReason.ERROR
    assert "fake backend failure" in end.error_message
    assert end.usage.completion_tokens == 2


async def test_tokenize_conversation(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    result = await engine.tokenize_result("", "a b c", with_strings=True)
    assert result.tokens == ("a", " b", " c")
    assert result.max_context_tokens == 4096
    with pytest.raises(InvalidArgument, match="empty"):
        await engine.tokenize("", Conversation(()))


async def test_stream_interval_sends_the_first_token_then_batches(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(fake_reply_tokens=10)
    request = chat("hello", output=OutputParams(stream_interval=4))
    events = await collect(engine, request)
    counts = [e.completion_tokens for e in events if isinstance(e, Delta)]
    assert counts == [1, 5, 9, 10]
    plain = await collect(engine, chat("hello"))
    assert text_of(events) == text_of(plain)
