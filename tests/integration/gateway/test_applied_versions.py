"""Applied versions travel from the worker's publisher to a gateway's waiter over real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from api.read_your_writes import ReadYourWrites
from infra.applied_versions import AppliedVersionsSubscriber, RedisAppliedVersions
from infra.redis_client import redis_client
from infra.settings import Settings

pytestmark = pytest.mark.integration


async def never() -> bool:
    raise AssertionError("the notification should have ended the wait")


async def test_a_published_batch_ends_the_waits_it_covers(stack_settings: Settings) -> None:
    settings = stack_settings.model_copy(update={"topic_prefix": f"it-applied-{uuid.uuid4().hex[:8]}"})
    redis = redis_client(settings)
    ryw = ReadYourWrites()
    subscriber = AppliedVersionsSubscriber(settings, redis, ryw.applied)
    await subscriber.start()
    try:
        waits = [asyncio.create_task(ryw.wait(f"conversation:{n}", 2, 5.0, never)) for n in range(3)]
        await asyncio.sleep(0.05)
        await RedisAppliedVersions(settings, redis).publish({f"conversation:{n}": 2 + n for n in range(3)})
        assert await asyncio.gather(*waits) == [True, True, True]
        assert ryw.seen("conversation:2") == 4
    finally:
        await subscriber.stop()
        await redis.aclose()
