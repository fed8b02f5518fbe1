"""Applied versions travel from the worker's publisher to a gateway's waiter over real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from api.read_your_writes import ReadYourWrites
from infra.applied_versions import AppliedVersionsSubscriber, RedisAppliedVersions, applied_channel
from infra.settings import Settings

pytestmark = pytest.mark.integration


async def never() -> bool:
    raise AssertionError("the notification should have ended the wait")


@dataclass
class Gateway:
    """One gateway's subscription (on its own named connection) and the worker's publisher."""

    settings: Settings
    redis: Redis
    name: str
    ryw: ReadYourWrites
    publisher: RedisAppliedVersions


@pytest.fixture
async def gateway(stack_settings: Settings) -> AsyncIterator[Gateway]:
    settings = stack_settings.model_copy(update={"topic_prefix": f"it-applied-{uuid.uuid4().hex[:8]}"})
    name = f"applied-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(settings.redis_url, decode_responses=True, client_name=name, socket_timeout=2.0)
    ryw = ReadYourWrites()
    subscriber = AppliedVersionsSubscriber(settings, redis, ryw.applied)
    await subscriber.start()
    try:
        yield Gateway(settings, redis, name, ryw, RedisAppliedVersions(settings, redis))
    finally:
        await subscriber.stop()
        await redis.aclose()


async def test_a_published_batch_ends_the_waits_it_covers(gateway: Gateway) -> None:
    ryw = gateway.ryw
    waits = [asyncio.create_task(ryw.wait(f"conversation:{n}", 2, 5.0, never)) for n in range(3)]
    await asyncio.sleep(0.05)
    await gateway.publisher.publish({f"conversation:{n}": 2 + n for n in range(3)})
    assert await asyncio.gather(*waits) == [True, True, True]
    assert ryw.seen("conversation:2") == 4


async def test_a_malformed_message_is_skipped_and_the_next_one_still_counts(gateway: Gateway) -> None:
    await gateway.redis.publish(applied_channel(gateway.settings), '{"conversation:x": "three"}')
    waiting = asyncio.create_task(gateway.ryw.wait("conversation:x", 3, 5.0, never))
    await asyncio.sleep(0.05)
    await gateway.publisher.publish({"conversation:x": 3})
    assert await waiting is True


async def test_after_its_connection_drops_the_subscription_comes_back(gateway: Gateway) -> None:
    async def connection_ids() -> list[str]:
        return [c["id"] for c in await gateway.redis.client_list(_type="pubsub") if c["name"] == gateway.name]

    (killed,) = await connection_ids()
    await gateway.redis.client_kill_filter(_id=killed)
    waiting = asyncio.create_task(gateway.ryw.wait("conversation:y", 1, 10.0, never))
    for _ in range(200):  # what is published before redis-py has re-subscribed is lost: publish again
        await gateway.publisher.publish({"conversation:y": 1})
        await asyncio.wait([waiting], timeout=0.05)
        if waiting.done():
            break
    assert await waiting is True
    assert killed not in await connection_ids()


async def test_a_callback_that_raises_does_not_end_the_subscription(stack_settings: Settings) -> None:
    settings = stack_settings.model_copy(update={"topic_prefix": f"it-applied-{uuid.uuid4().hex[:8]}"})
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    got: list[Mapping[str, int]] = []
    arrived = asyncio.Event()

    def on_applied(versions: Mapping[str, int]) -> None:
        got.append(versions)
        arrived.set()
        if len(got) == 1:
            raise RuntimeError("a bug in the waiter")

    subscriber = AppliedVersionsSubscriber(settings, redis, on_applied)
    await subscriber.start()
    try:
        publisher = RedisAppliedVersions(settings, redis)
        for version in (1, 2):
            arrived.clear()
            await publisher.publish({"s": version})
            async with asyncio.timeout(5):
                await arrived.wait()
        assert got == [{"s": 1}, {"s": 2}]
    finally:
        await subscriber.stop()
        await redis.aclose()
