"""Waiting on state that has no event to wait on: poll with a deadline, never sleep-and-hope."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Polls `condition` until truthy, failing (TimeoutError) after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 -- the state polled has no event to wait on
            await asyncio.sleep(0.005)
