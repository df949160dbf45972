"""Sliding-window rate limits shared by every worker, in Redis.

One sorted set per limited key (`<prefix>ratelimit:<key>`), one member per counted attempt,
scored by Redis's own clock in milliseconds. One Lua script (EVALSHA: one round trip per
check) drops the attempts that left the window, counts the rest, and either refuses with the
time until the oldest one leaves or counts this attempt and pushes the key's expiry out to one
window, so idle keys vanish by themselves. Redis runs a script atomically, so two workers
cannot both take the last slot, and `TIME` inside the script makes the workers' clocks
irrelevant.

When Redis cannot be reached (or answers with an error), a check neither lets everything
through nor refuses everything: it counts in this worker's own in-process limiter, so with N
workers at most N x `limit` attempts pass per window. Open would leave login brute force
unlimited during an outage; closed would take chat and login down with Redis. After a failure
the limiter stays on the in-process fallback for `retry_after_s` before asking Redis again, so
an outage does not add a timeout to every check; it logs a warning at most once per
`log_every_s`, and once when Redis answers again.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from webui_backend.services.rate_limit import SlidingWindowLimiter, refusal

log = logging.getLogger(__name__)

# KEYS[1] the key; ARGV: limit, window in ms, a member unique to this attempt.
# Returns 0 when the attempt was counted, else the ms until the oldest attempt leaves.
_CHECK_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class RedisRateLimiter:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "webui:",
        timeout_s: float = 0.5,
        retry_after_s: float = 5.0,
        log_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # No client-side retry with back-off: a check that cannot reach Redis at once uses
        # the fallback (one immediate retry covers a pooled connection the server closed).
        self._redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._script = self._redis.register_script(_CHECK_SCRIPT)
        self._prefix = prefix
        self._fallback = SlidingWindowLimiter(clock=clock)
        self._clock = clock
        self._retry_after_s = retry_after_s
        self._log_every_s = log_every_s
        self._members = itertools.count()
        self._instance = uuid.uuid4().hex[:12]
        self._redis_down_until = float("-inf")
        self._degraded = False
        self._next_warning = float("-inf")

    def _key(self, key: str) -> str:
        return f"{self._prefix}ratelimit:{key}"

    async def check(self, key: str, *, limit: int, window_s: float = 60.0, what: str) -> None:
        """See RateLimiter.check. Raises RateLimitedError; never a Redis error."""
        if limit <= 0:
            return
        if self._clock() < self._redis_down_until:
            await self._fallback.check(key, limit=limit, window_s=window_s, what=what)
            return
        window_ms = max(1, round(window_s * 1000))
        member = f"{self._instance}:{next(self._members)}"
        try:
            wait_ms = await self._script(keys=[self._key(key)], args=[limit, window_ms, member])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            await self._fallback.check(key, limit=limit, window_s=window_s, what=what)
            return
        self._answered()
        if wait_ms:
            raise refusal(what, int(wait_ms) / 1000)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        try:
            await self._redis.delete(self._key(key))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._answered()

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _failed(self, exc: BaseException) -> None:
        now = self._clock()
        self._redis_down_until = now + self._retry_after_s
        self._degraded = True
        if now >= self._next_warning:
            self._next_warning = now + self._log_every_s
            log.warning(
                "rate limits: Redis unreachable (%s); counting per worker until it answers",
                exc,
            )

    def _answered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("rate limits: Redis answers again; limits are shared by all workers")
