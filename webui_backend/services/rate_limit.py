"""In-process sliding-window rate limits (login attempts, chat messages).

One process holds the counters; several workers behind one deployment would need a shared
store (the same seam as the Redis hub).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from webui_backend.errors import RateLimitedError

_SWEEP_EVERY = 1024


class SlidingWindowLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._calls = 0

    def check(self, key: str, *, limit: int, window_s: float = 60.0, what: str) -> None:
        """Count one attempt for `key`; raise RateLimitedError (with the seconds until a slot
        frees) when `limit` attempts already happened within `window_s`. 0 = unlimited."""
        if limit <= 0:
            return
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - window_s:
            hits.popleft()
        if len(hits) >= limit:
            retry_after = max(1.0, math.ceil(hits[0] + window_s - now))
            raise RateLimitedError(
                f"Too many {what}; try again in {int(retry_after)} s.", retry_after_s=retry_after
            )
        hits.append(now)
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now, window_s)

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def _sweep(self, now: float, window_s: float) -> None:
        # Forget keys with no recent attempts, so memory follows the active set.
        stale = [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - window_s]
        for key in stale:
            del self._hits[key]
