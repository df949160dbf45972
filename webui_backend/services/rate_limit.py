"""Sliding-window rate limits (login attempts, chat messages).

`RateLimiter` is the seam: `SlidingWindowLimiter` counts in this process (one worker, the
default); `RedisRateLimiter` (services/redis_rate_limit.py) counts in Redis, so several
workers share one limit.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from webui_backend.errors import RateLimitedError

_SWEEP_EVERY = 1024


class RateLimiter(Protocol):
    async def check(self, key: str, *, limit: int, window_s: float = 60.0, what: str) -> None:
        """Count one attempt for `key`; raise RateLimitedError (with the seconds until a slot
        frees) when `limit` attempts already happened within the last `window_s`, in which
        case the refused attempt is not counted. `limit` 0 = unlimited (costs nothing)."""
        ...

    async def reset(self, key: str) -> None:
        """Forget the attempts counted for `key`."""
        ...

    async def aclose(self) -> None:
        """Release connections; the limiter is not used afterwards."""
        ...


def refusal(what: str, retry_after_s: float) -> RateLimitedError:
    """The error for a refused attempt; `retry_after_s` rounds up to whole seconds, at least 1."""
    retry_after = max(1.0, float(math.ceil(retry_after_s)))
    return RateLimitedError(
        f"Too many {what}; try again in {int(retry_after)} s.", retry_after_s=retry_after
    )


class SlidingWindowLimiter:
    """Counts in this process: each worker would allow the full limit on its own."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._calls = 0

    async def check(self, key: str, *, limit: int, window_s: float = 60.0, what: str) -> None:
        if limit <= 0:
            return
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - window_s:
            hits.popleft()
        if len(hits) >= limit:
            raise refusal(what, hits[0] + window_s - now)
        hits.append(now)
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now, window_s)

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    async def aclose(self) -> None:
        self._hits.clear()

    def _sweep(self, now: float, window_s: float) -> None:
        # Forget keys with no recent attempts, so memory follows the active set.
        stale = [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - window_s]
        for key in stale:
            del self._hits[key]
