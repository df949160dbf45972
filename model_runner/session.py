"""The runner's side of a ChatSession: many generations multiplexed over one gRPC call.

Per-token gRPC messages were the floor of a busy caller's CPU: grpc.aio spends 160-500 us of
Python per message received, whatever it carries (docs/benchmarks.md). A session sends each
burst of output as one message: every generation appends its events to the session's outbox,
and the call's writer takes everything pending as one `SessionResponse`. Events produced while
the previous message is being written (or in the same pass of the event loop: one engine step
wakes all its sequences together) leave together, and a request's consecutive Deltas merge. An
idle session still sends a lone token the moment it exists; there is no timer.

Each request runs in its own task with the same telemetry, deadline and error mapping as a
ChatStream call; a refusal becomes a `SessionRejection` with the status ChatStream would have
ended with, and the other requests go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import grpc

from model_runner.domain import Delta, Finished, Started
from model_runner.engine import Engine
from model_runner.errors import EngineError, InvalidArgument
from model_runner.generation_telemetry import GenerationTelemetry
from model_runner.interceptor import status_for
from model_runner.proto_convert import chat_request_from_proto, finished_to_proto, started_to_proto
from model_runner.v1 import runner_pb2 as pb

logger = logging.getLogger(__name__)

# Requests a session may have live at once: well above any engine's queue, so the engine's own
# admission (RESOURCE_EXHAUSTED with a retry hint) is what callers normally meet.
MAX_LIVE_PER_SESSION = 65_536


class SessionOutbox:
    """Events waiting for the call's writer; a request's consecutive Deltas are merged."""

    __slots__ = ("_deltas", "_events", "_rejections", "_waiter")

    def __init__(self) -> None:
        self._events: list[pb.GenerateResponse | tuple[str, Delta]] = []
        self._deltas: dict[str, int] = {}  # request id -> index of its pending Delta
        self._rejections: list[pb.SessionRejection] = []
        self._waiter: asyncio.Future[None] | None = None

    def delta(self, request_id: str, event: Delta) -> None:
        index = self._deltas.get(request_id)
        if index is None:
            self._deltas[request_id] = len(self._events)
            self._events.append((request_id, event))
            self.wake()
            return
        _, last = self._events[index]  # type: ignore[misc]  # always a pending Delta
        self._events[index] = (request_id, last.followed_by(event))

    def event(self, request_id: str, message: pb.GenerateResponse) -> None:
        self._deltas.pop(request_id, None)  # a later Delta must not jump ahead of this one
        self._events.append(message)
        self.wake()

    def reject(self, request_id: str, error: BaseException) -> None:
        self._deltas.pop(request_id, None)
        self._rejections.append(rejection(request_id, error))
        self.wake()

    def take(self) -> pb.SessionResponse | None:
        if not self._events and not self._rejections:
            return None
        response = pb.SessionResponse(rejections=self._rejections)
        add = response.events.add
        for item in self._events:
            if isinstance(item, tuple):
                request_id, delta = item
                message = add(request_id=request_id)
                message.delta.text = delta.text
                message.delta.completion_tokens = delta.completion_tokens
                if delta.token_ids:
                    message.delta.token_ids.extend(delta.token_ids)
            else:
                response.events.append(item)
        self._events, self._deltas, self._rejections = [], {}, []
        return response

    async def wait(self) -> None:
        if self._events or self._rejections:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        """Lets the writer look again (new events, or a request or the reading ended)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def rejection(request_id: str, error: BaseException) -> pb.SessionRejection:
    """What a ChatStream call would have ended with, as a per-request message."""
    if isinstance(error, EngineError):
        code, trailing = status_for(error)
        retry = next((int(value) for key, value in trailing if value.isdigit()), 0)
        return pb.SessionRejection(
            request_id=request_id,
            code=code.value[0],
            message=error.message,
            retry_after_ms=retry,
        )
    return pb.SessionRejection(
        request_id=request_id,
        code=grpc.StatusCode.INTERNAL.value[0],
        message=f"internal runner error: {type(error).__name__}",
    )


class SessionCall:
    """One ChatSession call: reads requests, runs each in a task, writes batched events."""

    def __init__(self, engine: Engine, telemetry: GenerationTelemetry) -> None:
        self._engine = engine
        self._telemetry = telemetry
        self._outbox = SessionOutbox()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reading = True

    async def serve(
        self, requests: AsyncIterator[pb.SessionRequest]
    ) -> AsyncGenerator[pb.SessionResponse, None]:
        reader = asyncio.create_task(self._read(requests))
        outbox = self._outbox
        try:
            while True:
                response = outbox.take()
                if response is not None:
                    yield response
                elif self._reading or self._tasks:
                    await outbox.wait()
                else:
                    return  # half-closed by the caller and every request has ended
        finally:
            reader.cancel()
            tasks = [reader, *self._tasks.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, requests: AsyncIterator[pb.SessionRequest]) -> None:
        try:
            async for message in requests:
                action = message.WhichOneof("action")
                if action == "chat":
                    self._start(message.chat)
                elif action == "cancel_request_id":
                    task = self._tasks.get(message.cancel_request_id)
                    if task is not None:
                        task.cancel()
        finally:
            self._reading = False
            self._outbox.wake()

    def _start(self, chat: pb.SessionChat) -> None:
        request_id = chat.request.request_id
        if not request_id:
            # Without an id the caller could not tell this request's events from others'.
            self._outbox.reject(
                "", InvalidArgument("request_id is empty; a session request needs its own id")
            )
        elif request_id in self._tasks:
            self._outbox.reject(
                request_id,
                InvalidArgument(f"request_id {request_id!r} is already live in this session"),
            )
        elif len(self._tasks) >= MAX_LIVE_PER_SESSION:
            self._outbox.reject(
                request_id,
                InvalidArgument("too many live requests on one session; open another session"),
            )
        else:
            self._tasks[request_id] = asyncio.create_task(self._run(request_id, chat))

    async def _run(self, request_id: str, chat: pb.SessionChat) -> None:
        outbox = self._outbox
        call = self._telemetry.begin("ChatSession", chat.metadata.items())
        error: Exception | None = None
        try:
            timeout = chat.timeout.ToNanoseconds() / 1e9 if chat.HasField("timeout") else None
            generation = chat_request_from_proto(chat.request, timeout)
            call.request(generation)
            async with aclosing(self._engine.stream(generation)) as events:
                async for event in events:
                    if type(event) is Delta:
                        outbox.delta(request_id, event)
                    elif isinstance(event, Started):
                        call.started(event)
                        outbox.event(request_id, started_to_proto(event))
                    elif isinstance(event, Finished):
                        call.finished(event)
                        outbox.event(request_id, finished_to_proto(request_id, event))
        except asyncio.CancelledError:
            # Cancelled by the caller (or the call ended): free the sequence now.
            self._engine.abort(request_id)
            raise
        except Exception as exc:
            error = exc
            if not isinstance(exc, EngineError):
                logger.error("unexpected error in a session request", exc_info=exc)
            outbox.reject(request_id, exc)
        finally:
            call.end(error)
            self._tasks.pop(request_id, None)
            outbox.wake()
