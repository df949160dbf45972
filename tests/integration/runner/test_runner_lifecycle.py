"""Backpressure and graceful shutdown; each test starts its own runner process."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import grpc
import pytest
from grpc import aio

from model_runner.client import (
    ChatMessage,
    GrpcRunnerClient,
    RunnerBusyError,
    RunnerEvent,
    RunnerUnavailableError,
    StreamDelta,
    StreamFinished,
    StreamStarted,
)
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc
from tests.support.runner_process import running_runner, start_runner

from .conftest import SLOW

pytestmark = pytest.mark.integration


async def test_queue_full_is_resource_exhausted_with_pushback() -> None:
    with running_runner("--max-running", "1", "--max-queued", "0") as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=30)
        busy = client.chat_stream([ChatMessage("user", SLOW)])
        try:
            assert isinstance(await anext(busy), StreamStarted)
            with pytest.raises(RunnerBusyError) as refused:
                async for _ in client.chat_stream([ChatMessage("user", "hi")]):
                    pass
            assert refused.value.retry_after_ms is not None
            assert refused.value.retry_after_ms > 0

            async with aio.insecure_channel(runner.address) as channel:
                request = pb.ChatRequest(
                    conversation=pb.Conversation(
                        messages=[pb.ChatMessage(role="user", content="x")]
                    )
                )
                call = pb_grpc.InferenceStub(channel).ChatStream(request, timeout=5)
                with pytest.raises(aio.AioRpcError) as error:
                    await call.read()
                assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                trailing = dict(await call.trailing_metadata() or ())
                assert int(trailing["grpc-retry-pushback-ms"]) > 0
        finally:
            await busy.aclose()
            await client.close()


async def test_sigterm_lets_short_streams_finish_and_refuses_new_ones() -> None:
    runner = start_runner("--grace-seconds", "10")
    client = GrpcRunnerClient(runner.address, default_timeout_s=30)
    short = client.chat_stream([ChatMessage("user", "/tps 20 /long 10")])  # ~0.5 s
    try:
        assert isinstance(await anext(short), StreamStarted)
        runner.send_signal(signal.SIGTERM)

        async def refused() -> bool:
            try:
                async for _ in client.chat_stream([ChatMessage("user", "hi")]):
                    pass
            except RunnerUnavailableError:
                return True
            return False

        async with asyncio.timeout(5):
            while not await refused():  # noqa: ASYNC110 -- waits for the drain to begin
                await asyncio.sleep(0.02)
        events: list[RunnerEvent] = [event async for event in short]
        finished = events[-1]
        assert isinstance(finished, StreamFinished)
        assert finished.reason == "eos"
        assert finished.completion_tokens == 10
        assert await asyncio.to_thread(runner.wait, 15) == 0
    finally:
        await short.aclose()
        await client.close()
        runner.stop()


async def test_sigterm_aborts_long_streams_after_the_grace_period() -> None:
    runner = start_runner("--grace-seconds", "0.5")
    client = GrpcRunnerClient(runner.address, default_timeout_s=30)
    try:
        events: list[RunnerEvent] = []
        async with contextlib.aclosing(client.chat_stream([ChatMessage("user", SLOW)])) as stream:
            async for event in stream:
                events.append(event)
                if isinstance(event, StreamDelta) and event.completion_tokens == 1:
                    runner.send_signal(signal.SIGTERM)
        finished = events[-1]
        assert isinstance(finished, StreamFinished)
        assert finished.reason == "aborted"
        assert 0 < finished.completion_tokens < 1000
        assert await asyncio.to_thread(runner.wait, 15) == 0
    finally:
        await client.close()
        runner.stop()
