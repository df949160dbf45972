"""One thread that runs the functions handed to it, in order, for an asyncio caller.

`loop.run_in_executor` on a one-thread `ThreadPoolExecutor` did the same with about twice the
CPU per hand-over (~45 µs against ~20 on the development VM; a turn makes two): a
`concurrent.futures.Future` with its condition variable, a work item, the executor's idle
semaphore, and an asyncio future chained to the first. Here a call is a queue put, and its
result one `call_soon_threadsafe` back to the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
A = TypeVar("A")

# (function, its argument, the caller's loop, the caller's future); None asks the thread to end.
_Call = tuple[Callable[[Any], Any], Any, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class WriterThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def call(self, function: Callable[[A], T], argument: A) -> asyncio.Future[T]:
        """`function(argument)` on the thread, after every call handed over before it.

        The returned future gets its result or exception. Cancelling it before the call
        starts skips the call; once started, the call runs to its end (as with an executor).
        Raises RuntimeError after `close`."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        if self._thread is None:
            # Daemon: a process that never reaches `close` (a crash) must still be able to
            # exit; an unfinished SQLite transaction is rolled back by the next opener.
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((function, argument, loop, future))
        return future

    def close(self) -> None:
        """Run the calls already handed over, then end the thread (blocks until it has)."""
        self._closed = True
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            function, argument, loop, future = call
            # Read across threads without a lock: a cancel that lands just after this check
            # is the "already started" case, whose result `_succeed` or `_fail` drops.
            if future.cancelled():
                continue
            try:
                result = function(argument)
            except BaseException as exc:  # handed to the caller, as an executor would
                _settle_soon(loop, _fail, future, exc)
            else:
                set_result_threadsafe(loop, future, result)


def set_result_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], value: T
) -> None:
    """Give `future` (of `loop`) its result from any thread; dropped if it was cancelled."""
    _settle_soon(loop, _succeed, future, value)


def _settle_soon(
    loop: asyncio.AbstractEventLoop,
    settle: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    # The caller's loop may be gone (closed without waiting): nobody is left to tell.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle, future, value)


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)
