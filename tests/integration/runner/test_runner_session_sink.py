"""`GrpcRunnerClient.chat_into`: a session's events pushed to a sink by the session's reader,
against a real runner process."""

from __future__ import annotations

import asyncio

import pytest

from model_runner.client import (
    ChatMessage,
    GrpcRunnerClient,
    RunnerModelNotFoundError,
    StreamDelta,
    StreamFinished,
    StreamStarted,
)
from tests.support.runner_process import RunnerProcess

from .conftest import SLOW, eventually, running_at_most, text_of

pytestmark = pytest.mark.integration


async def test_chat_into_pushes_events_in_order_and_errors_stay_per_request(
    runner: RunnerProcess,
) -> None:
    """`chat_into`: the session's reader calls the sink; same events, order and errors as
    `chat_stream`, next to iterated streams on the same session."""
    client = GrpcRunnerClient(runner.address, default_timeout_s=30)
    try:
        pushed: dict[int, list[object]] = {i: [] for i in range(4)}

        async def pushed_text(i: int) -> str:
            await client.chat_into(
                [ChatMessage("user", f"/long {10 + i}")], on_event=pushed[i].append
            )
            return "".join(e.text for e in pushed[i] if isinstance(e, StreamDelta))

        texts = await asyncio.gather(
            *(pushed_text(i) for i in range(4)), text_of(client, "/long 7")
        )
        assert [len(t.split()) for t in texts] == [10, 11, 12, 13, 7]
        for events in pushed.values():
            assert isinstance(events[0], StreamStarted)
            assert isinstance(events[-1], StreamFinished)
            assert all(isinstance(e, StreamDelta) for e in events[1:-1])
        with pytest.raises(RunnerModelNotFoundError, match="no-such-model"):
            await client.chat_into(
                [ChatMessage("user", "hi")], on_event=lambda e: None, model="no-such-model"
            )
        assert len((await text_of(client, "/long 3")).split()) == 3
    finally:
        await client.close()


async def test_a_failing_sink_ends_only_its_request_and_frees_the_slot(
    runner: RunnerProcess,
) -> None:
    """What the sink raises is raised by `chat_into` and cancels that request at the runner;
    the session's reader, and every other request on it, go on."""
    client = GrpcRunnerClient(runner.address, default_timeout_s=30)
    admin = GrpcRunnerClient(runner.address)
    try:
        other = asyncio.create_task(text_of(client, "/tps 50 /long 40"))

        def fail_on_delta(event: object) -> None:
            if isinstance(event, StreamDelta):
                raise ValueError("the relay broke")

        with pytest.raises(ValueError, match="the relay broke"):
            await client.chat_into([ChatMessage("user", SLOW)], on_event=fail_on_delta)
        assert len((await other).split()) == 40
        await eventually(lambda: running_at_most(admin, 0))
    finally:
        await client.close()
        await admin.close()


async def test_cancelling_chat_into_frees_the_slot(runner: RunnerProcess) -> None:
    client = GrpcRunnerClient(runner.address, default_timeout_s=30)
    admin = GrpcRunnerClient(runner.address)
    try:
        first_delta = asyncio.Event()

        def on_event(event: object) -> None:
            if isinstance(event, StreamDelta):
                first_delta.set()

        task = asyncio.create_task(client.chat_into([ChatMessage("user", SLOW)], on_event=on_event))
        await first_delta.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: running_at_most(admin, 0))
        assert len((await text_of(client, "/long 3")).split()) == 3
    finally:
        await client.close()
        await admin.close()
