"""Tasks that belong to the server rather than to any request or socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def every(
    interval_s: float, job: Callable[[], Awaitable[object]], *, log: logging.Logger, failure: str
) -> None:
    """Runs `job` once per `interval_s`, first after one interval, until cancelled. A failed
    pass is logged as `failure` on the caller's logger and the next interval tries again: a
    server-owned loop must outlive one bad pass."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except Exception:
            log.exception(failure)


class BackgroundTasks:
    """Keeps strong references to server-owned tasks and cancels them at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel every task and wait (bounded) for their cleanup to run."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
