"""The RateLimiter contract (api/rate_limits.py), run against every adapter of it.

Real time and short periods, since the Redis adapter takes its clock from Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from api.rate_limits import RateLimiter
from infra.settings import RateLimit


def fresh_key() -> str:
    return f"contract:{uuid.uuid4().hex}"


class RateLimiterContract:
    """Subclasses provide a ``limiter`` fixture."""

    async def test_a_burst_of_limit_calls_is_allowed_then_the_next_is_refused(self, limiter: RateLimiter) -> None:
        limit = RateLimit(limit=5, period_s=10)
        key = fresh_key()
        decisions = [await limiter.hit(key, limit) for _ in range(6)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False]
        assert all(d.retry_after_s == 0 for d in decisions[:5])
        # One call is earned back every period / limit = 2 s.
        assert 1.5 < decisions[5].retry_after_s <= 2.0

    async def test_keys_are_counted_apart(self, limiter: RateLimiter) -> None:
        limit = RateLimit(limit=1, period_s=10)
        first, second = fresh_key(), fresh_key()
        assert (await limiter.hit(first, limit)).allowed
        assert not (await limiter.hit(first, limit)).allowed
        assert (await limiter.hit(second, limit)).allowed

    async def test_after_retry_after_one_more_call_is_allowed(self, limiter: RateLimiter) -> None:
        limit = RateLimit(limit=2, period_s=0.4)
        key = fresh_key()
        assert (await limiter.hit(key, limit)).allowed
        assert (await limiter.hit(key, limit)).allowed
        refused = await limiter.hit(key, limit)
        assert not refused.allowed and 0 < refused.retry_after_s <= 0.2
        await asyncio.sleep(refused.retry_after_s + 0.02)
        assert (await limiter.hit(key, limit)).allowed
        assert not (await limiter.hit(key, limit)).allowed

    async def test_refused_calls_do_not_extend_the_wait(self, limiter: RateLimiter) -> None:
        limit = RateLimit(limit=1, period_s=0.3)
        key = fresh_key()
        assert (await limiter.hit(key, limit)).allowed
        waits = [(await limiter.hit(key, limit)).retry_after_s for _ in range(20)]
        assert all(0 < w <= 0.3 for w in waits)
        assert waits == sorted(waits, reverse=True)  # only time passing changes the wait
        await asyncio.sleep(0.35)
        assert (await limiter.hit(key, limit)).allowed

    async def test_a_full_burst_is_available_again_after_the_period(self, limiter: RateLimiter) -> None:
        limit = RateLimit(limit=3, period_s=0.3)
        key = fresh_key()
        for _ in range(3):
            assert (await limiter.hit(key, limit)).allowed
        assert not (await limiter.hit(key, limit)).allowed
        await asyncio.sleep(0.35)
        assert [(await limiter.hit(key, limit)).allowed for _ in range(4)] == [True, True, True, False]

    async def test_concurrent_calls_never_exceed_the_limit(self, limiter: RateLimiter) -> None:
        limit = RateLimit(limit=7, period_s=30)
        key = fresh_key()
        decisions = await asyncio.gather(*(limiter.hit(key, limit) for _ in range(40)))
        assert sum(d.allowed for d in decisions) == 7

    async def test_concurrent_calls_are_decided_in_the_order_they_were_made(self, limiter: RateLimiter) -> None:
        # Calls of one moment, on several keys with different limits, interleaved.
        limits = {fresh_key(): RateLimit(limit=n, period_s=30) for n in (1, 3, 5)}
        calls = [key for _ in range(6) for key in limits]
        decisions = await asyncio.gather(*(limiter.hit(key, limits[key]) for key in calls))
        for key, limit in limits.items():
            mine = [d.allowed for k, d in zip(calls, decisions, strict=True) if k == key]
            assert mine == [True] * limit.limit + [False] * (6 - limit.limit), key

    @pytest.mark.parametrize("limit", [RateLimit(limit=1, period_s=1), RateLimit(limit=1000, period_s=3600)])
    async def test_the_first_call_of_a_key_is_allowed(self, limiter: RateLimiter, limit: RateLimit) -> None:
        assert (await limiter.hit(fresh_key(), limit)).allowed
