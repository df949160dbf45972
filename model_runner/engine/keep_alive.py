"""Keep-alive timers (Ollama semantics): a model unloads `keep_alive_s` after its last request.

`KeepAlive` only keeps the time: it arms a timer when a model goes idle, disarms it when a
request arrives, and then calls the registry's `expire(entry)`, which re-checks under the
registry's lock (a request may have arrived since the timer fired) and unloads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from model_runner.domain import ModelState
from model_runner.engine.model_entry import ModelEntry

logger = logging.getLogger(__name__)

ExpireCallback = Callable[[ModelEntry], Coroutine[Any, Any, None]]


class KeepAlive:
    """Arms and disarms the unload timer of each model; runs `expire` in background tasks."""

    def __init__(self, expire: ExpireCallback) -> None:
        self._expire = expire
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, entry: ModelEntry) -> None:
        """(Re)arms the timer of an idle READY model: keep-alive 0 expires it now, negative
        pins it (no timer)."""
        self.cancel(entry)
        if entry.state is not ModelState.READY or entry.active or entry.keep_alive_s < 0:
            return
        if entry.keep_alive_s == 0:
            self._spawn(self._expire(entry))
            return
        loop = asyncio.get_running_loop()
        entry.expiry = loop.call_later(entry.keep_alive_s, self._on_expiry, entry)
        entry.expires_at = time.time() + entry.keep_alive_s

    def cancel(self, entry: ModelEntry) -> None:
        """Disarms the model's timer (a request arrived, or it is unloading)."""
        if entry.expiry is not None:
            entry.expiry.cancel()
            entry.expiry = None
        entry.expires_at = None

    def close(self) -> None:
        """Cancels expiries already under way (the runner is stopping)."""
        for task in list(self._tasks):
            task.cancel()

    def _on_expiry(self, entry: ModelEntry) -> None:
        entry.expiry = None
        self._spawn(self._expire(entry))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(consume_exception)


def consume_exception(task: asyncio.Task[None]) -> None:
    """Done-callback for a background task nobody awaits: marks its exception retrieved (no
    "exception never retrieved" log); EngineErrors were already reported to callers."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.debug("background model task failed: %r", exc)
