"""Engine admission, abort, deadlines, cancellation, draining and validation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from model_runner.domain import (
    Conversation,
    Delta,
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    Message,
    SamplingParams,
    Started,
    StoppingParams,
)
from model_runner.engine import Engine
from model_runner.errors import (
    DeadlineExceeded,
    DeadlineTooShort,
    Draining,
    DuplicateRequest,
    InvalidArgument,
    ModelNotFound,
    ModelNotLoaded,
    QueueFull,
)

from .helpers import EngineFactory, chat, collect, wait_until

SLOW = "/tps 50 /long 1000"  # 20 s of output: only ends when we end it


async def first_event(
    engine: Engine, request: GenerationRequest
) -> tuple[asyncio.Task[list[GenerationEvent]], asyncio.Event]:
    """Runs a stream in a task; returns it and an event set once Started arrived."""
    started = asyncio.Event()

    async def run() -> list[GenerationEvent]:
        events: list[GenerationEvent] = []
        async for event in engine.stream(request):
            events.append(event)
            started.set()
        return events

    task = asyncio.create_task(run())
    async with asyncio.timeout(5):
        await started.wait()
    return task, started


async def test_queue_full_is_refused_with_a_retry_hint(make_engine: EngineFactory) -> None:
    engine = await make_engine(max_running=1, max_queued=1)
    running, _ = await first_event(engine, chat(SLOW, request_id="a"))
    queued = asyncio.create_task(collect(engine, chat("hi", request_id="b")))
    await wait_until(lambda: engine.load_snapshot().queued == 1)
    with pytest.raises(QueueFull) as refused:
        await collect(engine, chat("hi", request_id="c"))
    assert refused.value.retry_after_ms > 0
    # The queued request runs once the slot frees up.
    assert engine.abort("a")
    assert isinstance((await running)[-1], Finished)
    events = await queued
    assert isinstance(events[-1], Finished)
    assert events[-1].reason is FinishReason.EOS
    assert engine.load_snapshot().running == 0


async def test_abort_ends_a_running_stream_with_partial_text(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    task, _ = await first_event(engine, chat(SLOW, request_id="r"))
    assert engine.abort("r")
    assert not engine.abort("r")  # already ending
    async with asyncio.timeout(2):
        events = await task
    end = events[-1]
    assert isinstance(end, Finished)
    assert end.reason is FinishReason.ABORTED
    assert not engine.abort("r")  # finished: unknown now


async def test_abort_interrupts_a_slow_step_at_once(make_engine: EngineFactory) -> None:
    engine = await make_engine(fake_tokens_per_second=0.5)  # 2 s per token
    task, _ = await first_event(engine, chat("hello", request_id="slow"))
    assert engine.abort("slow")
    async with asyncio.timeout(1):  # far less than the 2 s step
        events = await task
    assert isinstance(events[-1], Finished)
    assert events[-1].reason is FinishReason.ABORTED


async def test_abort_of_unknown_id_is_false(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    assert not engine.abort("nope")


async def test_deadline_gives_time_limit_with_partial_text(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    events = await collect(engine, chat(SLOW, timeout_s=0.4))
    end = events[-1]
    assert isinstance(end, Finished)
    assert end.reason is FinishReason.TIME_LIMIT
    assert 0 < end.usage.completion_tokens < 1000
    assert "".join(e.text for e in events if isinstance(e, Delta))
    assert end.usage.total_ns < 0.4e9  # stopped before the caller's deadline


async def test_deadline_too_short_is_refused(make_engine: EngineFactory) -> None:
    engine = await make_engine(min_deadline_ms=100)
    with pytest.raises(DeadlineTooShort, match="timeout"):
        await collect(engine, chat("hi", timeout_s=0.01))


async def test_deadline_while_queued_is_deadline_exceeded(make_engine: EngineFactory) -> None:
    engine = await make_engine(max_running=1, max_queued=4)
    running, _ = await first_event(engine, chat(SLOW, request_id="a"))
    with pytest.raises(DeadlineExceeded):
        await collect(engine, chat("hi", timeout_s=0.3))
    assert engine.load_snapshot().queued == 0
    engine.abort("a")
    await running


async def test_duplicate_live_request_id_is_refused(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    task, _ = await first_event(engine, chat(SLOW, request_id="same"))
    with pytest.raises(DuplicateRequest, match="same"):
        await collect(engine, chat("hi", request_id="same"))
    engine.abort("same")
    await task


async def test_cancelling_the_reader_frees_the_slot(make_engine: EngineFactory) -> None:
    engine = await make_engine(max_running=1)
    task, _ = await first_event(engine, chat(SLOW, request_id="c"))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    snapshot = engine.load_snapshot()
    assert (snapshot.running, snapshot.queued) == (0, 0)
    assert not engine.abort("c")


async def test_closing_the_iterator_early_frees_the_slot(make_engine: EngineFactory) -> None:
    engine = await make_engine(max_running=1)
    stream = engine.stream(chat(SLOW))
    assert isinstance(await anext(stream), Started)
    assert isinstance(await anext(stream), Delta)
    await stream.aclose()
    assert engine.load_snapshot().running == 0
    assert (await collect(engine, chat("hi")))[-1].reason is FinishReason.EOS  # type: ignore[union-attr]


async def test_drain_refuses_new_work_and_aborts_after_grace(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    task, _ = await first_event(engine, chat(SLOW))
    drained = asyncio.create_task(engine.drain(0.2))
    await wait_until(lambda: engine.load_snapshot().draining)
    with pytest.raises(Draining):
        await collect(engine, chat("hi"))
    assert await drained == 1
    events = await task
    assert isinstance(events[-1], Finished)
    assert events[-1].reason is FinishReason.ABORTED


async def test_drain_lets_short_streams_finish(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    task, _ = await first_event(engine, chat("/tps 50 /long 5"))
    assert await engine.drain(5.0) == 0
    events = await task
    assert isinstance(events[-1], Finished)
    assert events[-1].reason is FinishReason.EOS


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (GenerationRequest(prompt=Conversation(())), "conversation is empty"),
        (chat("hi", sampling=SamplingParams(temperature=5.0)), "temperature is 5.0"),
        (chat("hi", sampling=SamplingParams(top_p=0.0)), "top_p"),
        (chat("hi", sampling=SamplingParams(temperature=float("nan"))), "temperature"),
        (chat("hi", stopping=StoppingParams(max_tokens=0)), "max_tokens"),
        (chat("hi", stopping=StoppingParams(stop=("",))), "stop\\[0\\] is empty"),
        (chat("hi", stopping=StoppingParams(stop=tuple("x" * 17))), "at most 16"),
        (
            GenerationRequest(prompt=Conversation((Message("robot", "hi"),))),
            "role is 'robot'",
        ),
    ],
)
async def test_invalid_requests_say_what_to_fix(
    make_engine: EngineFactory, request_: GenerationRequest, message: str
) -> None:
    engine = await make_engine()
    with pytest.raises(InvalidArgument, match=message):
        await collect(engine, request_)
    assert engine.load_snapshot().running == 0


async def test_unknown_model_and_unloaded_model(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    with pytest.raises(ModelNotFound, match="'other'"):
        await collect(engine, chat("hi", model="other"))
    cold = await make_engine(start=False)
    with pytest.raises(ModelNotLoaded):
        await collect(cold, chat("hi"))
