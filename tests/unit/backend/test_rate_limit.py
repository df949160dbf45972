"""The RateLimiter contract against both implementations (in-process and the real local Redis),
then what only the Redis one does: one limit across instances (workers), keys that expire,
and the in-process fallback while Redis is unreachable."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.unit.backend.hub_fixtures import REDIS_URL, delete_prefix, redis_or_skip
from webui_backend.errors import RateLimitedError
from webui_backend.services.rate_limit import RateLimiter, SlidingWindowLimiter
from webui_backend.services.redis_rate_limit import RedisRateLimiter

# Nothing listens on port 1: connecting is refused at once.
UNREACHABLE_URL = "redis://127.0.0.1:1/0"


class LimiterFactory:
    """Makes limiters of one kind; Redis ones made by one factory share a key prefix, as the
    workers of one deployment do."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = f"webui-test-{uuid.uuid4().hex[:10]}:"
        self._made: list[RateLimiter] = []

    def make(self) -> RateLimiter:
        limiter: RateLimiter
        if self.kind == "redis":
            limiter = RedisRateLimiter(REDIS_URL, prefix=self.prefix)
        else:
            limiter = SlidingWindowLimiter()
        self._made.append(limiter)
        return limiter

    async def aclose(self) -> None:
        for limiter in self._made:
            await limiter.aclose()
        if self.kind == "redis":
            await delete_prefix(self.prefix)


@pytest.fixture(params=["in_process", "redis"])
async def limiters(request: pytest.FixtureRequest) -> AsyncIterator[LimiterFactory]:
    if request.param == "redis":
        await redis_or_skip()
    factory = LimiterFactory(request.param)
    try:
        yield factory
    finally:
        await factory.aclose()


@pytest.fixture
async def redis_limiters() -> AsyncIterator[LimiterFactory]:
    await redis_or_skip()
    factory = LimiterFactory("redis")
    try:
        yield factory
    finally:
        await factory.aclose()


async def passes(limiter: RateLimiter, key: str, *, limit: int, window_s: float = 60.0) -> bool:
    try:
        await limiter.check(key, limit=limit, window_s=window_s, what="tries")
    except RateLimitedError:
        return False
    return True


# -- the contract, both implementations -----------------------------------------------------


async def test_refuses_past_the_limit_with_an_honest_retry_after(
    limiters: LimiterFactory,
) -> None:
    limiter = limiters.make()
    for _ in range(3):
        await limiter.check("k", limit=3, what="tries")
    with pytest.raises(RateLimitedError) as refused:
        await limiter.check("k", limit=3, what="tries")
    # The oldest attempt leaves the 60 s window within 60 s (whole seconds, rounded up).
    assert 59 <= refused.value.retry_after_s <= 60
    assert "Too many tries" in str(refused.value)


async def test_keys_are_counted_apart_and_zero_is_unlimited(limiters: LimiterFactory) -> None:
    limiter = limiters.make()
    assert await passes(limiter, "a", limit=1)
    assert not await passes(limiter, "a", limit=1)
    assert await passes(limiter, "b", limit=1)
    assert all([await passes(limiter, "a", limit=0) for _ in range(50)])


async def test_the_window_slides_and_refused_attempts_do_not_count(
    limiters: LimiterFactory,
) -> None:
    limiter = limiters.make()
    window_s = 1.0
    started = time.monotonic()
    deadline = started + 10

    async def poll_until_admitted() -> int:
        """Refusals until an attempt passes; every one of them is itself an attempt, so if
        refusals were counted the window would never free while this keeps asking."""
        refusals = 0
        while not await passes(limiter, "k", limit=2, window_s=window_s):
            refusals += 1
            assert time.monotonic() < deadline, "no slot freed within 10 s"
            await asyncio.sleep(0.02)
        return refusals

    assert await passes(limiter, "k", limit=2, window_s=window_s)
    assert await passes(limiter, "k", limit=2, window_s=window_s)
    assert await poll_until_admitted() > 0
    # Freed once the first attempt left the window (Redis counts whole milliseconds).
    assert time.monotonic() - started >= window_s - 0.01
    # The second attempt leaves next and frees the other slot, despite the refusals between.
    await poll_until_admitted()
    # Now the two admitted after the window slid fill it again.
    assert not await passes(limiter, "k", limit=2, window_s=window_s)


async def test_reset_forgets_a_key(limiters: LimiterFactory) -> None:
    limiter = limiters.make()
    assert await passes(limiter, "k", limit=1)
    assert await passes(limiter, "other", limit=1)
    await limiter.reset("k")
    assert await passes(limiter, "k", limit=1)
    assert not await passes(limiter, "other", limit=1)


# -- Redis only ---------------------------------------------------------------------------


async def test_two_workers_share_one_limit(redis_limiters: LimiterFactory) -> None:
    first, second = redis_limiters.make(), redis_limiters.make()
    results = await asyncio.gather(
        *(passes(limiter, "k", limit=5) for limiter in [first, second] * 10)
    )
    assert results.count(True) == 5
    with pytest.raises(RateLimitedError) as refused:
        await second.check("k", limit=5, what="tries")
    assert 59 <= refused.value.retry_after_s <= 60
    # A success on one worker resets the count for the other too.
    await first.reset("k")
    assert await passes(second, "k", limit=5)


async def test_keys_live_under_the_prefix_and_expire_with_the_window(
    redis_limiters: LimiterFactory,
) -> None:
    limiter = redis_limiters.make()
    other = LimiterFactory("redis")
    try:
        assert await passes(limiter, "login:acct:a@b.c", limit=1, window_s=30)
        # Another deployment (another prefix) counts on its own.
        assert await passes(other.make(), "login:acct:a@b.c", limit=1, window_s=30)
    finally:
        await other.aclose()
    client = Redis.from_url(REDIS_URL)
    try:
        key = f"{redis_limiters.prefix}ratelimit:login:acct:a@b.c"
        assert await client.zcard(key) == 1
        assert 0 < await client.pttl(key) <= 30_000
    finally:
        await client.aclose()


async def test_unreachable_redis_counts_in_process_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    limiter = RedisRateLimiter(
        UNREACHABLE_URL, retry_after_s=5, log_every_s=60, clock=lambda: now[0]
    )
    caplog.set_level(logging.WARNING, logger="webui_backend.services.redis_rate_limit")
    try:
        await limiter.check("k", limit=0, what="tries")  # unlimited: Redis is not asked
        assert not caplog.records
        assert await passes(limiter, "k", limit=2)
        assert await passes(limiter, "k", limit=2)
        with pytest.raises(RateLimitedError) as refused:
            await limiter.check("k", limit=2, what="tries")
        assert refused.value.retry_after_s == 60
        now[0] += 6  # past retry_after_s: Redis is asked again, fails again, no new warning
        assert await passes(limiter, "other", limit=2)
        assert len(caplog.records) == 1
        assert "Redis unreachable" in caplog.records[0].getMessage()
        now[0] += 60  # past log_every_s: one more warning
        assert await passes(limiter, "other", limit=2)
        assert len(caplog.records) == 2
        await limiter.reset("k")  # reset still clears the in-process count
        assert await passes(limiter, "k", limit=2)
    finally:
        await limiter.aclose()
