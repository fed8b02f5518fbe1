"""The Redis rate limiter against the real Redis: the contract, and limits shared by gateways."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from infra.rate_limit import GCRA_LUA, MAX_BATCH, RedisRateLimiter
from infra.redis_client import redis_client
from infra.settings import RateLimit, Settings
from tests.contracts.rate_limiter import RateLimiterContract, fresh_key

pytestmark = pytest.mark.integration

GCRA_SHA = hashlib.sha1(GCRA_LUA.encode()).hexdigest()


@pytest.fixture
async def redis(stack_settings: Settings) -> AsyncIterator[Redis]:
    client = redis_client(stack_settings)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"it-ratelimit-{uuid.uuid4().hex[:8]}"


class TestRedisRateLimiter(RateLimiterContract):
    @pytest.fixture
    def limiter(self, redis: Redis, prefix: str) -> RedisRateLimiter:
        return RedisRateLimiter(redis, prefix)


async def test_two_gateways_share_one_count(stack_settings: Settings, redis: Redis, prefix: str) -> None:
    other = redis_client(stack_settings)  # another process's own connection
    try:
        one, two = RedisRateLimiter(redis, prefix), RedisRateLimiter(other, prefix)
        limit = RateLimit(limit=4, period_s=60)
        key = fresh_key()
        allowed = [(await (one if i % 2 else two).hit(key, limit)).allowed for i in range(6)]
    finally:
        await other.aclose()
    assert allowed == [True] * 4 + [False] * 2


async def test_a_bucket_expires_once_it_is_full_again(redis: Redis, prefix: str) -> None:
    limiter = RedisRateLimiter(redis, prefix)
    key = fresh_key()
    await limiter.hit(key, RateLimit(limit=10, period_s=20))  # full again 2 s later
    ttl_ms = await redis.pttl(f"{prefix}:{key}")
    assert 0 < ttl_ms <= 2000


async def test_a_redis_that_forgot_the_script_is_taught_it_again(redis: Redis, prefix: str) -> None:
    """A restarted Redis (or ``SCRIPT FLUSH``) no longer knows the script: the next hit loads it."""
    limiter = RedisRateLimiter(redis, prefix)
    key = fresh_key()
    limit = RateLimit(limit=2, period_s=60)
    assert (await limiter.hit(key, limit)).allowed
    await redis.script_flush()
    assert not (await redis.script_exists(GCRA_SHA))[0]
    assert (await limiter.hit(key, limit)).allowed
    assert (await redis.script_exists(GCRA_SHA))[0]
    refused = await limiter.hit(key, limit)
    assert not refused.allowed and refused.retry_after_s > 0, "the count survived the flush"


async def test_the_calls_of_one_moment_share_one_round_trip(redis: Redis, prefix: str) -> None:
    """Under load the events of one read of the sockets are checked in one script call each
    ``MAX_BATCH`` (counted by Redis itself), and each gets its own decision."""
    limiter = RedisRateLimiter(redis, prefix)
    limit = RateLimit(limit=2, period_s=60)
    await limiter.hit(fresh_key(), limit)  # the script is loaded
    keys = [fresh_key() for _ in range(MAX_BATCH + 44)]

    async def evalsha_calls() -> int:
        return int((await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))

    before = await evalsha_calls()
    decisions = await asyncio.gather(*(limiter.hit(key, limit) for key in [*keys, *keys, *keys]))
    calls = await evalsha_calls() - before
    assert 4 <= calls <= 5  # 900 checks in 256s (a stray check of the platform's own may add one)
    allowed = [d.allowed for d in decisions]
    assert allowed == [True] * (2 * len(keys)) + [False] * len(keys)
    assert all(0 < d.retry_after_s <= 30 for d in decisions if not d.allowed)
