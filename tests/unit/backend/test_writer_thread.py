"""`WriterThread`: calls run in order on one thread, results and errors come back, a call
cancelled before it starts is skipped, and `close` finishes what was handed over."""

from __future__ import annotations

import asyncio
import threading

import pytest

from webui_backend.db.writer_thread import WriterThread


async def test_calls_run_in_order_on_one_thread_and_errors_come_back() -> None:
    writer = WriterThread("test-writer")
    ran: list[tuple[int, str]] = []

    def record(n: int) -> int:
        ran.append((n, threading.current_thread().name))
        if n == 3:
            raise ValueError("three")
        return n * 10

    futures = [writer.call(record, n) for n in range(5)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    writer.close()
    assert results[:3] == [0, 10, 20]
    assert isinstance(results[3], ValueError)
    assert results[4] == 40
    assert ran == [(n, "test-writer") for n in range(5)]


async def test_a_call_cancelled_before_it_starts_is_skipped() -> None:
    writer = WriterThread("test-writer")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def block(_: None) -> None:
        started.set()
        release.wait(10)

    blocking = writer.call(block, None)
    await asyncio.to_thread(started.wait, 10)
    skipped = writer.call(ran.append, "skipped")
    skipped.cancel()
    after = writer.call(ran.append, "after")
    release.set()
    await blocking
    await after
    writer.close()
    assert ran == ["after"]


async def test_close_runs_what_was_handed_over_then_refuses() -> None:
    writer = WriterThread("test-writer")
    ran: list[int] = []
    pending = [writer.call(ran.append, n) for n in range(3)]
    await asyncio.to_thread(writer.close)
    assert ran == [0, 1, 2]
    await asyncio.gather(*pending)
    with pytest.raises(RuntimeError, match="closed"):
        writer.call(ran.append, 4)
