"""Adaptive coalescing of a request's output on its way to gRPC.

Every gRPC message costs tens of microseconds of Python on each side, whatever it carries, so
under load the runner should send fewer, larger Deltas -- but never delay the first token or a
lone token on an idle stream. `coalesce()` decouples the engine from the writer: a pump task
pulls the engine's events while the handler is busy writing the previous message, and the
handler takes everything that arrived in the meantime as one merged Delta. When the stream is
idle the next event is handed over the moment it exists; when gRPC's write is slow (a loaded
process, a client reading slowly, HTTP/2 flow control) the pieces merge. The signal is the
write itself, so there is no timer and no tuning knob.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from model_runner.domain import Delta, GenerationEvent


class _Pending:
    """Events pulled but not yet handed to the writer; consecutive Deltas are merged."""

    __slots__ = ("done", "error", "events", "waiter")

    def __init__(self) -> None:
        self.events: list[GenerationEvent] = []
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def add(self, event: GenerationEvent) -> None:
        events = self.events
        if events and type(event) is Delta:
            last = events[-1]
            if type(last) is Delta:
                events[-1] = last.followed_by(event)
                return
        events.append(event)
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


async def coalesce(events: AsyncIterator[GenerationEvent]) -> AsyncGenerator[GenerationEvent, None]:
    """Yield `events` in order, merging consecutive Deltas that pile up while the consumer is
    suspended (writing). An exception of `events` is raised here after the events before it.

    `events` is iterated entirely inside one pump task, so the engine's request belongs to
    that task (an abort cancels the pump's await of the backend, never the gRPC handler).
    Closing this generator (the call ended or was cancelled) cancels the pump, which closes
    `events` and frees the sequence.
    """
    pending = _Pending()
    loop = asyncio.get_running_loop()

    async def pump() -> None:
        try:
            async for event in events:
                pending.add(event)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            pending.error = exc
        finally:
            pending.done = True
            pending.wake()

    task = loop.create_task(pump())
    try:
        while True:
            batch = pending.events
            if batch:
                pending.events = []
                for event in batch:
                    yield event
                continue
            if pending.done:
                error = pending.error
                if error is not None and not isinstance(error, asyncio.CancelledError):
                    raise error
                return
            pending.waiter = loop.create_future()
            await pending.waiter
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
