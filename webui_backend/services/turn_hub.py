"""The stream hub: which turns are live, the recent events of each, and stop signals.

Generation publishes into the hub; sockets and SSE responses subscribe. Neither side knows the
other, so a turn outlives the connection that started it. `TurnHub` is the seam; this module
holds the in-process implementation (one worker, the default) and the `TurnLog` that both
implementations use for local fan-out. `redis_turn_hub.py` implements the same protocol across
several workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from webui_backend.errors import NotFoundError
from webui_backend.services.turn_events import TurnEvent, TurnFinished


class ReplayRangeLostError(Exception):
    """The hub no longer holds the events right after the requested seq (trimmed or expired).

    Not a client error: the caller resumes from the stored checkpoint instead.
    `after_seq` is the cursor the subscriber had reached.
    """

    def __init__(self, after_seq: int) -> None:
        super().__init__(f"events after seq {after_seq} are no longer in the hub")
        self.after_seq = after_seq


class TurnHub(Protocol):
    async def start(self) -> None:
        """Connect and start background listeners; called once in the app's lifespan."""

    async def aclose(self) -> None:
        """Stop listeners and release connections."""

    async def open(self, turn_id: str, owner_id: str, *, first_seq: int = 1) -> None:
        """Register a live turn whose next event has `first_seq` (a continued reply goes on
        numbering after its stored events). Replaces a finished log of the same turn."""

    def publish(self, turn_id: str, event: TurnEvent) -> None:
        """Append an event to the turn's log and wake its subscribers. Synchronous, so that
        the runner client's reader can relay a token without waking another task; never
        blocks on a subscriber (the Redis hub sends in a background flush)."""

    async def close(self, turn_id: str) -> None:
        """Mark the turn finished; its log stays readable for a while, then is dropped."""

    def subscribe(
        self, turn_id: str, owner_id: str, *, after_seq: int = 0
    ) -> AsyncIterator[Sequence[TurnEvent]]:
        """Yield the turn's events after `after_seq` in batches, live until it finishes.

        Raises NotFoundError when the hub does not know the turn or it belongs to someone
        else, and ReplayRangeLostError when the events after the cursor were dropped.
        """
        ...

    async def live_owner(self, turn_id: str) -> str | None:
        """The owner of a turn generating in any worker, or None."""
        ...

    def stop_signal(self, turn_id: str) -> asyncio.Future[None]:
        """A future resolved when someone asks to stop this turn (from any worker). Only the
        worker that generates the turn asks for it, after `open`."""
        ...

    async def request_stop(self, turn_id: str) -> bool:
        """Ask the worker generating the turn to stop it; False if it is not live anywhere."""
        ...

    def live_turn_ids(self) -> list[str]:
        """Turns generating in this process."""
        ...

    async def live_turn_ids_anywhere(self) -> list[str]:
        """Turns generating in any live worker (start-up recovery must leave them alone)."""
        ...

    async def orphan_tail(self, turn_id: str, after_seq: int) -> tuple[str, int]:
        """For a turn whose worker died: the text of the events its log still holds after
        `after_seq`, contiguous from `after_seq + 1`, and the seq of the last of them;
        `("", after_seq)` when there are none (or a gap)."""
        ...

    async def finish_orphan(self, turn_id: str, event: TurnFinished) -> None:
        """Append the finished event of a turn whose worker died, when it follows the log's
        last event, and close the log, so that its watchers end instead of waiting. A log
        already closed is left alone."""


class TurnLog:
    """One turn's recent events with cursors. Bounded: past `max_events` the oldest are
    dropped, and a subscriber whose cursor falls behind gets ReplayRangeLostError."""

    __slots__ = ("base_seq", "closed_at", "events", "max_events", "owner_id", "stop", "waiters")

    def __init__(self, owner_id: str, first_seq: int, max_events: int) -> None:
        self.owner_id = owner_id
        # seq of events[0]; events are contiguous, so seq N sits at index N - base_seq.
        self.base_seq = first_seq
        self.events: list[TurnEvent] = []
        self.max_events = max_events
        self.closed_at: float | None = None
        self.stop: asyncio.Future[None] | None = None
        # One future per waiting reader, so publishing to an unwatched turn costs an append and
        # a reader that is cancelled (its socket dropped) cancels only its own future.
        self.waiters: list[asyncio.Future[None]] = []

    def append(self, event: TurnEvent) -> None:
        events = self.events
        if not events:
            self.base_seq = event.seq
        events.append(event)
        if len(events) > self.max_events:
            # Drop a quarter at once so trimming is amortized, not a shift per event.
            drop = max(len(events) - self.max_events, self.max_events // 4)
            del events[:drop]
            self.base_seq += drop
        if self.waiters:
            self._wake()

    def finish(self) -> None:
        self.closed_at = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def read(self, after_seq: int) -> AsyncIterator[Sequence[TurnEvent]]:
        """Batches after `after_seq` until the log is closed (or ends with a finished event)."""
        cursor = after_seq  # the last seq delivered
        while True:
            events = self.events
            if events:
                start = cursor + 1 - self.base_seq
                if start < 0:
                    raise ReplayRangeLostError(cursor)
                if start < len(events):
                    batch = events[start:]
                    cursor = batch[-1].seq
                    yield batch
                    if type(batch[-1]) is TurnFinished:
                        return
                    continue
            elif cursor + 1 < self.base_seq:
                raise ReplayRangeLostError(cursor)
            if self.closed_at is not None:
                return
            # Not one future shared through asyncio.shield: shield costs every reader an extra
            # pass of the event loop per event.
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):  # already woken and taken off the list
                    self.waiters.remove(waiter)
                raise


class InProcessTurnHub:
    """Turn logs in this process's memory. Subscribers read with a cursor, so a slow reader
    never blocks the publisher and receives everything it missed as one batch."""

    def __init__(self, *, retain_finished_s: float = 300.0, max_events_per_turn: int = 4096):
        self._turns: dict[str, TurnLog] = {}
        # Finished logs in the order they finished, so eviction looks only at expired ones
        # (scanning every retained log on each new turn grew with the turn rate).
        self._finished: deque[tuple[float, str, TurnLog]] = deque()
        self._retain_finished_s = retain_finished_s
        self._max_events = max_events_per_turn

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def open(self, turn_id: str, owner_id: str, *, first_seq: int = 1) -> None:
        self._evict_expired()
        self._turns[turn_id] = TurnLog(owner_id, first_seq, self._max_events)

    def publish(self, turn_id: str, event: TurnEvent) -> None:
        log = self._turns.get(turn_id)
        if log is not None and log.closed_at is None:
            log.append(event)

    async def close(self, turn_id: str) -> None:
        log = self._turns.get(turn_id)
        if log is not None and log.closed_at is None:
            self._finish(turn_id, log)

    def _finish(self, turn_id: str, log: TurnLog) -> None:
        log.finish()
        assert log.closed_at is not None
        self._finished.append((log.closed_at, turn_id, log))

    async def subscribe(
        self, turn_id: str, owner_id: str, *, after_seq: int = 0
    ) -> AsyncIterator[Sequence[TurnEvent]]:
        log = self._turns.get(turn_id)
        if log is None or log.owner_id != owner_id:
            raise NotFoundError("No live reply with this id.")
        async for batch in log.read(max(after_seq, 0)):
            yield batch

    async def live_owner(self, turn_id: str) -> str | None:
        log = self._turns.get(turn_id)
        return log.owner_id if log is not None and log.closed_at is None else None

    def stop_signal(self, turn_id: str) -> asyncio.Future[None]:
        log = self._turns[turn_id]
        if log.stop is None:
            log.stop = asyncio.get_running_loop().create_future()
        return log.stop

    async def request_stop(self, turn_id: str) -> bool:
        log = self._turns.get(turn_id)
        if log is None or log.closed_at is not None:
            return False
        stop = self.stop_signal(turn_id)
        if not stop.done():
            stop.set_result(None)
        return True

    def live_turn_ids(self) -> list[str]:
        return [tid for tid, log in self._turns.items() if log.closed_at is None]

    async def live_turn_ids_anywhere(self) -> list[str]:
        return self.live_turn_ids()

    async def orphan_tail(self, turn_id: str, after_seq: int) -> tuple[str, int]:
        # A worker that died took its in-process logs with it.
        return "", after_seq

    async def finish_orphan(self, turn_id: str, event: TurnFinished) -> None:
        log = self._turns.get(turn_id)
        if log is not None and log.closed_at is None:
            log.append(event)
            self._finish(turn_id, log)

    def _evict_expired(self) -> None:
        deadline = time.monotonic() - self._retain_finished_s
        finished = self._finished
        while finished and finished[0][0] < deadline:
            _, turn_id, log = finished.popleft()
            # A continued reply reopens its turn id with a new log: keep that one.
            if self._turns.get(turn_id) is log:
                del self._turns[turn_id]
