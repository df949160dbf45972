"""Bounded admission: at most `max_running` sequences generate, `max_queued` more wait.

Beyond both the request is refused at once with `QueueFull` and a retry hint, never queued
without bound (vLLM #18826). Waiters are served by priority, then arrival order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from model_runner.errors import QueueFull

_MIN_RETRY_MS = 100
_MAX_RETRY_MS = 30_000


class Ticket:
    """One request's place: queued, then running, then released."""

    __slots__ = ("_admission", "_future", "state")

    def __init__(self, admission: Admission, future: asyncio.Future[None] | None) -> None:
        self._admission = admission
        self._future = future
        # "running" as soon as a slot is granted, even before the waiter wakes up, so that
        # release() always knows whether it holds a slot.
        self.state = "running" if future is None else "queued"

    async def wait(self) -> None:
        """Waits for a slot (returns at once if one was free)."""
        if self._future is not None and self.state == "queued":
            await self._future

    def release(self) -> None:
        """Gives back the slot or the queue place; idempotent."""
        state, self.state = self.state, "released"
        if state == "running":
            self._admission._slot_freed()
        elif state == "queued":
            self._admission._queued -= 1
            if self._future is not None and not self._future.done():
                self._future.cancel()


class Admission:
    def __init__(self, max_running: int, max_queued: int) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.running = 0
        self._queued = 0
        self._waiters: list[tuple[int, int, Ticket, asyncio.Future[None]]] = []
        self._order = itertools.count()
        # Smoothed time a request holds a slot, for the retry hint; 1 s until measured.
        self._service_ms = 1000.0

    @property
    def queued(self) -> int:
        return self._queued

    def enter(self, priority: int = 0) -> Ticket:
        """Takes a slot or a queue place. Raises `QueueFull` when both are taken."""
        if self.running < self.max_running and not self._queued:
            self.running += 1
            return Ticket(self, None)
        if self._queued >= self.max_queued:
            raise QueueFull(
                f"the runner is at capacity ({self.running} running, {self._queued} queued); "
                "retry later or on another replica",
                retry_after_ms=self.retry_after_ms(),
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = Ticket(self, future)
        heapq.heappush(self._waiters, (-priority, next(self._order), ticket, future))
        self._queued += 1
        return ticket

    def retry_after_ms(self) -> int:
        """About when a queue place frees up: queue length times the time per slot."""
        estimate = self._service_ms * (self._queued + 1) / self.max_running
        return int(min(max(estimate, _MIN_RETRY_MS), _MAX_RETRY_MS))

    def record_service_time(self, ms: float) -> None:
        self._service_ms += 0.1 * (ms - self._service_ms)

    def _slot_freed(self) -> None:
        while self._waiters:
            _, _, ticket, future = heapq.heappop(self._waiters)
            if ticket.state != "queued":
                continue  # released while waiting
            ticket.state = "running"
            self._queued -= 1
            future.set_result(None)
            return
        self.running -= 1
