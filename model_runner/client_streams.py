"""One chat turn's events on the caller's side: over a ChatSession route, or a call of its own.

`GrpcRunnerClient.chat_stream` iterates them; `chat_into` pushes them to a sink. Both end after
StreamFinished, and an abandoned request (the caller stopped early or failed) is cancelled at
the runner, which frees its sequence.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing

from grpc import aio

from model_runner.client_errors import RunnerUnavailableError, error_from_rpc
from model_runner.client_session import SessionChannel
from model_runner.client_types import (
    RunnerEvent,
    StreamDelta,
    StreamFinished,
    StreamStarted,
    finished_from_proto,
)
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc


def event_from_proto(response: pb.GenerateResponse, target: str) -> RunnerEvent:
    """`target`: the runner's address, reported in StreamStarted."""
    kind = response.WhichOneof("event")
    if kind == "delta":
        delta = response.delta
        return StreamDelta(delta.text, delta.completion_tokens)
    if kind == "started":
        s = response.started
        return StreamStarted(response.request_id, s.model, s.prompt_tokens, runner=target)
    return finished_from_proto(response.finished)


async def session_stream(
    session: SessionChannel,
    request: pb.ChatRequest,
    timeout_s: float,
    metadata: Sequence[tuple[str, str]],
    target: str,
) -> AsyncGenerator[RunnerEvent, None]:
    request_id = request.request_id
    route = session.start(request, timeout_s, metadata)
    finished = False
    try:
        while True:
            for response in await route.take():
                event = event_from_proto(response, target)
                if type(event) is StreamFinished:
                    finished = True
                    yield event
                    return
                if type(event) is StreamStarted:
                    route.started = True
                yield event
    finally:
        if finished:
            session.forget(request_id)
        else:
            session.cancel(request_id)  # abandoned early: the runner frees the sequence


async def session_into(
    session: SessionChannel,
    request: pb.ChatRequest,
    timeout_s: float,
    metadata: Sequence[tuple[str, str]],
    target: str,
    on_event: Callable[[RunnerEvent], None],
) -> None:
    """The session's reader calls `on_event` itself, in the order the events arrive."""

    def deliver(message: pb.GenerateResponse) -> None:
        event = event_from_proto(message, target)
        kind = type(event)
        if kind is StreamStarted:
            route.started = True
        on_event(event)
        if kind is StreamFinished:
            route.end()

    route = session.start(request, timeout_s, metadata, sink=deliver)
    try:
        await route.wait_end()
    finally:
        if route.ended:
            session.forget(request.request_id)
        else:
            session.cancel(request.request_id)  # abandoned early: the runner frees it


async def call_stream(
    channel: aio.Channel,
    request: pb.ChatRequest,
    timeout_s: float,
    metadata: Sequence[tuple[str, str]],
    target: str,
) -> AsyncGenerator[RunnerEvent, None]:
    """A ChatStream call of its own (a runner without ChatSession, or sessions turned off)."""
    stub = pb_grpc.InferenceStub(channel)
    call = stub.ChatStream(request, timeout=timeout_s, metadata=tuple(metadata) or None)
    started = finished = False
    try:
        async for response in call:
            event = event_from_proto(response, target)
            if type(event) is StreamStarted:
                started = True
            elif type(event) is StreamFinished:
                finished = True
            yield event
    except aio.AioRpcError as exc:
        raise error_from_rpc(exc, started=started, target=target) from exc
    finally:
        if not finished:
            call.cancel()  # abandoned early: tell the runner to free the sequence
    if not finished:
        raise RunnerUnavailableError(
            f"the runner stream at {target} ended without a Finished event"
        )


async def push_events(
    events: AsyncGenerator[RunnerEvent, None], on_event: Callable[[RunnerEvent], None]
) -> None:
    """`chat_into` over an iterated stream: every event to `on_event`, then `events` closed
    (also when `on_event` raises, which cancels the request)."""
    async with aclosing(events):
        async for event in events:
            on_event(event)
