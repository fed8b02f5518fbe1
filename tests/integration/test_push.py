"""A batch's pushes leave in one Redis message, in order, as python-socketio's emit publishes them,
and the gateways' manager hands them on one by one (real Redis); a Redis that does not take them
raises instead of dropping them silently."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from infra.localstack.ports import free_port
from infra.push import BATCH_MAX, BATCH_METHOD, BatchReadingRedisManager, RedisPusher, socket_channel
from infra.redis_client import close_pubsub
from infra.settings import Settings
from projections.pushes import Push

pytestmark = pytest.mark.integration


async def test_a_batch_of_pushes_arrives_in_order_as_socketio_messages(stack_settings: Settings) -> None:
    settings = stack_settings.model_copy(update={"topic_prefix": f"push-{uuid.uuid4().hex[:8]}"})
    redis = Redis.from_url(settings.redis_url)
    listener = Redis.from_url(settings.redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(socket_channel(settings))
    try:
        pushes = [
            Push("message:new", {"seq": 1}, ("u1", "u2")),
            Push("message:new", {"seq": 2}, ("u1",)),
            Push("nobody", {"seq": 0}, ()),  # no recipient: nothing published
            Push("conversation:updated", {"version": 3}, ("u2",)),
        ]
        await RedisPusher(settings, redis).push_all(pushes)
        async with asyncio.timeout(5):
            message = None
            while message is None:
                message = await pubsub.get_message(timeout=1.0)
        batch = json.loads(message["data"])
        assert batch["method"] == BATCH_METHOD
        received: list[dict[str, Any]] = batch["messages"]
        assert [(m["method"], m["event"], m["data"], m["room"], m["namespace"]) for m in received] == [
            ("emit", "message:new", [{"seq": 1}], ["user:u1", "user:u2"], "/"),
            ("emit", "message:new", [{"seq": 2}], ["user:u1"], "/"),
            ("emit", "conversation:updated", [{"version": 3}], ["user:u2"], "/"),
        ]
        assert await pubsub.get_message(timeout=0.3) is None, "nothing else was published"
    finally:
        await close_pubsub(pubsub)
        await listener.aclose()
        await redis.aclose()


async def test_the_gateways_manager_hands_on_a_batch_one_by_one(stack_settings: Settings) -> None:
    """What python-socketio's listener gets from the gateways' manager: each emit of a batch, in
    order, then a lone emit as python-socketio publishes it, a big batch in chunks, and no more."""
    settings = stack_settings.model_copy(update={"topic_prefix": f"push-{uuid.uuid4().hex[:8]}"})
    manager = BatchReadingRedisManager(settings.redis_url, channel=socket_channel(settings), write_only=True)
    redis = Redis.from_url(settings.redis_url)
    got: list[Any] = []
    many = BATCH_MAX + 5
    enough = asyncio.Event()

    async def listen() -> None:
        async for item in manager._listen():
            got.append(item)
            if len(got) >= 4 + many:
                enough.set()

    listener = asyncio.create_task(listen())
    try:
        for _ in range(100):  # until the manager has subscribed
            if (await redis.pubsub_numsub(socket_channel(settings)))[0][1]:
                break
            await asyncio.sleep(0.05)
        pusher = RedisPusher(settings, redis)
        await pusher.push_all([Push("message:new", {"seq": n}, ("u1",)) for n in (1, 2, 3)])
        await pusher.push_all([Push("conversation:updated", {"version": 4}, ("u2",))])
        await pusher.push_all([Push("message:new", {"seq": n}, ("u3",)) for n in range(many)])
        async with asyncio.timeout(5):
            await enough.wait()
        await asyncio.sleep(0.2)  # nothing more comes
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await redis.aclose()
        if manager.redis is not None:
            await manager.redis.aclose()
    assert len(got) == 4 + many
    assert all(isinstance(m, dict) and m["method"] == "emit" for m in got)
    assert [(m["event"], m["data"][0], m["room"]) for m in got[:4]] == [
        ("message:new", {"seq": 1}, ["user:u1"]),
        ("message:new", {"seq": 2}, ["user:u1"]),
        ("message:new", {"seq": 3}, ["user:u1"]),
        ("conversation:updated", {"version": 4}, ["user:u2"]),
    ]
    assert [m["data"][0]["seq"] for m in got[4:]] == list(range(many))


async def test_a_redis_that_does_not_answer_makes_the_push_raise(stack_settings: Settings) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=0.5)
    try:
        with pytest.raises(RedisConnectionError):
            await RedisPusher(stack_settings, redis).push_all([Push("message:new", {"seq": 1}, ("u1",))])
    finally:
        await redis.aclose()
