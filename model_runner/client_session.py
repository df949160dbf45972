"""The caller's side of a ChatSession: many chat streams over one long-lived gRPC call.

`GrpcRunnerClient.chat_stream` and `chat_into` use one `SessionChannel` per channel when the
runner offers ChatSession (see the rpc's comment in protos/). A reader task receives each
SessionResponse and hands every event to its request's `Route`: queued for the caller's task,
or straight to the caller's sink (`chat_into`), which spares a task wake-up per event. A writer
task sends the starts and cancels queued by any number of callers, so no caller ever awaits a
write and a cancel can be queued from a `finally` block. When the call breaks (the runner died
or restarted, a network failure) every live route fails the way its own ChatStream call would
have, and the next chat opens a new session.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Sequence

import grpc
from grpc import aio

from model_runner.client_errors import (
    RunnerDeadlineError,
    RunnerError,
    RunnerInvalidRequestError,
    RunnerUnavailableError,
    error_from_code,
    error_from_rpc,
)
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc

# A route whose runner has said nothing this long after the request's own timeout fails on the
# caller's side too: the runner ends a timed-out stream itself, so this only fires when the
# runner is wedged while its connection stays up.
_DEADLINE_GRACE_S = 10.0
_SWEEP_INTERVAL_S = 1.0

ErrorFor = Callable[[bool], RunnerError]  # started -> the error to raise
Sink = Callable[[pb.GenerateResponse], None]
_Call = aio.StreamStreamCall[pb.SessionRequest, pb.SessionResponse]


class Route:
    """The events of one request on a session: queued for the caller to take, or, with a
    `sink`, handed to it synchronously by the session's reader as they arrive."""

    __slots__ = (
        "_error",
        "_events",
        "_sink",
        "_sink_error",
        "_waiter",
        "deadline",
        "ended",
        "started",
    )

    def __init__(self, deadline: float | None, sink: Sink | None = None) -> None:
        self._events: list[pb.GenerateResponse] = []
        self._error: ErrorFor | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._sink = sink
        self._sink_error: Exception | None = None
        self.ended = False  # the sink took the last event (`end`)
        self.deadline = deadline
        self.started = False  # set by the caller when it has taken the Started event

    def push(self, message: pb.GenerateResponse) -> None:
        sink = self._sink
        if sink is None:
            self._events.append(message)
            _wake(self._waiter)
            return
        if self._sink_error is not None or self.ended:
            return
        try:
            sink(message)
        except Exception as exc:  # the caller's bug must not end the reader (every route's)
            self._sink_error = exc
            _wake(self._waiter)

    def end(self) -> None:
        """The sink took the last event (Finished): `wait_end` returns."""
        self.ended = True
        _wake(self._waiter)

    def fail(self, error: ErrorFor) -> None:
        if self._error is None:
            self._error = error
        _wake(self._waiter)

    async def take(self) -> list[pb.GenerateResponse]:
        """Every event received so far (at least one); raises the route's error once the events
        before it have been taken."""
        while True:
            events = self._events
            if events:
                self._events = []
                return events
            if self._error is not None:
                raise self._error(self.started)
            await self._wait()

    async def wait_end(self) -> None:
        """For a route with a sink: returns once the sink has called `end`; raises what the
        sink raised, or the route's error."""
        while True:
            if self._sink_error is not None:
                raise self._sink_error
            if self.ended:
                return
            if self._error is not None:
                raise self._error(self.started)
            await self._wait()

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class SessionChannel:
    """One open ChatSession call and the requests that live on it."""

    def __init__(self, channel: aio.Channel, target: str) -> None:
        self._target = target
        # No request iterator: requests go out through call.write() from the writer task.
        self._call: _Call = pb_grpc.InferenceStub(channel).ChatSession(None)
        self._routes: dict[str, Route] = {}
        self._outgoing: deque[pb.SessionRequest] = deque()
        self._writer_waiter: asyncio.Future[None] | None = None
        self.broken = False
        # True when the runner has no ChatSession (an older runner): use ChatStream instead.
        self.unimplemented = False
        self._tasks = [
            asyncio.create_task(self._read(), name="runner-session-read"),
            asyncio.create_task(self._write(), name="runner-session-write"),
            asyncio.create_task(self._sweep(), name="runner-session-deadlines"),
        ]

    def start(
        self,
        request: pb.ChatRequest,
        timeout_s: float | None,
        metadata: Sequence[tuple[str, str]],
        sink: Sink | None = None,
    ) -> Route:
        request_id = request.request_id
        if request_id in self._routes:
            raise RunnerInvalidRequestError(
                f"request_id {request_id!r} is already streaming on this client"
            )
        chat = pb.SessionChat(request=request, metadata=dict(metadata))
        deadline = None
        if timeout_s is not None:
            chat.timeout.FromNanoseconds(int(timeout_s * 1e9))
            deadline = asyncio.get_running_loop().time() + timeout_s + _DEADLINE_GRACE_S
        route = Route(deadline, sink)
        self._routes[request_id] = route
        self._send(pb.SessionRequest(chat=chat))
        return route

    def cancel(self, request_id: str) -> None:
        """Stops listening to a request and tells the runner to drop it (non-blocking)."""
        if self._routes.pop(request_id, None) is not None and not self.broken:
            self._send(pb.SessionRequest(cancel_request_id=request_id))

    def forget(self, request_id: str) -> None:
        """The request finished: nothing more will come for it."""
        self._routes.pop(request_id, None)

    async def close(self) -> None:
        self._fail(lambda started: RunnerUnavailableError("the runner client was closed"))
        self._call.cancel()
        for task in self._tasks:
            task.cancel()
        current = asyncio.current_task()
        await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)

    def _send(self, message: pb.SessionRequest) -> None:
        self._outgoing.append(message)
        _wake(self._writer_waiter)

    async def _write(self) -> None:
        outgoing = self._outgoing
        loop = asyncio.get_running_loop()
        try:
            while not self.broken:
                while outgoing:
                    await self._call.write(outgoing.popleft())
                self._writer_waiter = loop.create_future()
                await self._writer_waiter
                self._writer_waiter = None
        except asyncio.CancelledError:
            raise
        except Exception:  # the call ended; the reader reports why
            self._call.cancel()

    async def _read(self) -> None:
        try:
            async for response in self._call:
                routes = self._routes
                for message in response.events:
                    route = routes.get(message.request_id)
                    if route is not None:  # else: cancelled by its caller, late events
                        route.push(message)
                for rejection in response.rejections:
                    route = routes.pop(rejection.request_id, None)
                    if route is not None:
                        error = error_from_code(
                            rejection.code,
                            rejection.message,
                            retry_after_ms=rejection.retry_after_ms or None,
                            target=self._target,
                        )
                        route.fail(functools.partial(_after_start, error))
        except aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                self.unimplemented = True
            failure, target = exc, self._target
            self._fail(lambda started: error_from_rpc(failure, started=started, target=target))
            return
        except asyncio.CancelledError:
            self._fail(lambda started: RunnerUnavailableError("the runner client was closed"))
            raise
        target = self._target
        self._fail(
            lambda started: RunnerUnavailableError(f"the runner at {target} ended the session")
        )

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.broken:
            await asyncio.sleep(_SWEEP_INTERVAL_S)
            now = loop.time()
            for request_id, route in list(self._routes.items()):
                if route.deadline is not None and now > route.deadline:
                    self.cancel(request_id)
                    route.fail(self._silent_runner)

    def _silent_runner(self, started: bool) -> RunnerError:
        message = f"the runner at {self._target} did not end the request by its deadline"
        return RunnerUnavailableError(message) if started else RunnerDeadlineError(message)

    def _fail(self, error: ErrorFor) -> None:
        self.broken = True
        routes, self._routes = self._routes, {}
        for route in routes.values():
            route.fail(error)
        _wake(self._writer_waiter)  # the writer sees `broken` and ends


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _after_start(error: RunnerError, started: bool) -> RunnerError:
    """A rejection after Started can only be the runner failing mid-reply."""
    if started:
        return RunnerUnavailableError(f"the runner stream broke after it started: {error.message}")
    return error
