"""Streaming through a real runner process: events, cancellation, abort, deadlines."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from grpc import aio

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    GrpcRunnerClient,
    RunnerEvent,
    StreamDelta,
    StreamFinished,
    StreamStarted,
)
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc
from tests.support.runner_process import RunnerProcess

from .conftest import SLOW, eventually

pytestmark = pytest.mark.integration


async def stream(client: GrpcRunnerClient, text: str, **kwargs: object) -> list[RunnerEvent]:
    messages = [ChatMessage("system", "be brief"), ChatMessage("user", text)]
    async with contextlib.aclosing(client.chat_stream(messages, **kwargs)) as events:  # type: ignore[arg-type]
        return [event async for event in events]


async def idle(client: GrpcRunnerClient) -> bool:
    load = await client.get_load()
    return load.running == 0 and load.queued == 0


async def test_full_stream_through_the_client(client: GrpcRunnerClient) -> None:
    events = await stream(client, "/echo Hello there, general Kenobi", request_id="full-1")
    started, *deltas, finished = events
    assert isinstance(started, StreamStarted)
    assert started.request_id == "full-1"
    assert started.model == "fake"
    assert all(isinstance(d, StreamDelta) for d in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, StreamDelta)) == (
        "Hello there, general Kenobi"
    )
    counts = [d.completion_tokens for d in deltas if isinstance(d, StreamDelta)]
    assert counts == sorted(counts)
    assert counts[-1] == 4
    assert isinstance(finished, StreamFinished)
    assert finished.reason == "eos"
    assert finished.completion_tokens == 4
    assert finished.prompt_tokens == started.prompt_tokens > 0
    assert finished.total_ms >= finished.ttft_ms >= 0


async def test_stop_strings_and_utf8_through_the_wire(client: GrpcRunnerClient) -> None:
    options = GenerationOptions(stop=("世界",))
    events = await stream(client, "/bytes Grüße, 世界!", options=options)
    text = "".join(e.text for e in events if isinstance(e, StreamDelta))
    assert text == "Grüße, "
    finished = events[-1]
    assert isinstance(finished, StreamFinished)
    assert (finished.reason, finished.stop_sequence) == ("stop", "世界")


async def test_generate_with_a_raw_stub(channel: aio.Channel) -> None:
    stub = pb_grpc.InferenceStub(channel)
    request = pb.GenerateRequest(prompt="/echo raw prompt", request_id="gen-1")
    responses = [r async for r in stub.Generate(request, timeout=10)]
    kinds = [r.WhichOneof("event") for r in responses]
    assert kinds[0] == "started"
    assert kinds[-1] == "finished"
    assert set(kinds[1:-1]) == {"delta"}
    assert {r.request_id for r in responses} == {"gen-1"}
    assert "".join(r.delta.text for r in responses) == "raw prompt"
    assert responses[-1].finished.reason == pb.FINISH_REASON_EOS


async def test_breaking_out_of_the_stream_frees_the_slot(client: GrpcRunnerClient) -> None:
    async with contextlib.aclosing(client.chat_stream([ChatMessage("user", SLOW)])) as events:
        async for event in events:
            if isinstance(event, StreamDelta):
                break
    await eventually(lambda: idle(client))


async def test_cancelling_the_reading_task_frees_the_slot(client: GrpcRunnerClient) -> None:
    got_delta = asyncio.Event()

    async def read() -> None:
        async for event in client.chat_stream([ChatMessage("user", SLOW)]):
            if isinstance(event, StreamDelta):
                got_delta.set()

    task = asyncio.create_task(read())
    async with asyncio.timeout(5):
        await got_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: idle(client))


async def test_abort_from_another_connection(runner: RunnerProcess) -> None:
    reader = GrpcRunnerClient(runner.address, default_timeout_s=30)
    admin = GrpcRunnerClient(runner.address)
    try:
        events: list[RunnerEvent] = []
        async with contextlib.aclosing(
            reader.chat_stream([ChatMessage("user", SLOW)], request_id="abort-me")
        ) as stream_events:
            async for event in stream_events:
                events.append(event)
                if isinstance(event, StreamDelta):
                    assert await admin.abort("abort-me")
        finished = events[-1]
        assert isinstance(finished, StreamFinished)
        assert finished.reason == "aborted"
        assert finished.completion_tokens >= 1
        assert not await admin.abort("abort-me")
    finally:
        await reader.close()
        await admin.close()


async def test_deadline_ends_with_time_limit_and_partial_text(client: GrpcRunnerClient) -> None:
    events = await stream(client, SLOW, timeout_s=1.0)
    finished = events[-1]
    assert isinstance(finished, StreamFinished)
    assert finished.reason == "time_limit"
    assert 0 < finished.completion_tokens < 1000
    assert "".join(e.text for e in events if isinstance(e, StreamDelta))


async def test_cancelled_raw_call_reports_cancelled(channel: aio.Channel) -> None:
    stub = pb_grpc.InferenceStub(channel)
    request = pb.ChatRequest(
        conversation=pb.Conversation(messages=[pb.ChatMessage(role="user", content=SLOW)])
    )
    call = stub.ChatStream(request, timeout=10)
    first = await call.read()
    assert isinstance(first, pb.GenerateResponse)
    assert first.HasField("started")
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED
    load_stub = pb_grpc.ModelsStub(channel)

    async def slot_free() -> bool:
        return (await load_stub.GetLoad(pb.GetLoadRequest(), timeout=5)).running == 0

    await eventually(slot_free)
