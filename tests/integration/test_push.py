"""A batch's pushes leave in one Redis pipeline, in order, as python-socketio's emit publishes them
(real Redis), and a Redis that does not take them raises instead of dropping them silently."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from infra.localstack.ports import free_port
from infra.push import RedisPusher, socket_channel
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
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while len(received) < 3:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    received.append(json.loads(message["data"]))
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


async def test_a_redis_that_does_not_answer_makes_the_push_raise(stack_settings: Settings) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=0.5)
    try:
        with pytest.raises(RedisConnectionError):
            await RedisPusher(stack_settings, redis).push_all([Push("message:new", {"seq": 1}, ("u1",))])
    finally:
        await redis.aclose()
