"""Adaptive coalescing: immediate when idle, merged while the writer is busy, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from model_runner.coalesce import coalesce
from model_runner.domain import Delta, GenerationEvent


class _Source:
    """An event source the test feeds by hand."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[GenerationEvent | BaseException | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def events(self) -> AsyncIterator[GenerationEvent]:
        try:
            while (item := await self.queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed.set()


async def test_an_idle_stream_gets_each_delta_at_once() -> None:
    source = _Source()
    out = coalesce(source.events())
    for i in range(3):
        source.queue.put_nowait(Delta(f"t{i}", i + 1))
        assert await asyncio.wait_for(anext(out), 5) == Delta(f"t{i}", i + 1)
    source.queue.put_nowait(None)
    with pytest.raises(StopAsyncIteration):
        await anext(out)


async def test_deltas_arriving_while_the_writer_is_busy_are_merged_in_order() -> None:
    source = _Source()
    out = coalesce(source.events())
    source.queue.put_nowait(Delta("a", 1, (10,)))
    assert await anext(out) == Delta("a", 1, (10,))
    # The writer is "busy" (not pulling) while three more deltas arrive and are pumped.
    for event in (Delta("b", 2, (11,)), Delta("c", 3, (12,)), Delta("d", 4, (13,))):
        source.queue.put_nowait(event)
    for _ in range(10):  # let the pump take all three (each is one loop turn)
        await asyncio.sleep(0)
    assert source.queue.empty()
    assert await anext(out) == Delta("bcd", 4, (11, 12, 13))
    source.queue.put_nowait(None)
    assert [e async for e in out] == []


async def test_an_error_is_raised_after_the_events_before_it() -> None:
    source = _Source()
    out = coalesce(source.events())
    source.queue.put_nowait(Delta("x", 1))
    source.queue.put_nowait(RuntimeError("backend broke"))
    assert await anext(out) == Delta("x", 1)
    with pytest.raises(RuntimeError, match="backend broke"):
        await anext(out)


async def test_closing_the_stream_closes_the_source() -> None:
    source = _Source()
    out = coalesce(source.events())
    source.queue.put_nowait(Delta("x", 1))
    await anext(out)
    await out.aclose()
    await asyncio.wait_for(source.closed.wait(), 5)
