"""Redis: the connection factory and the worker-liveness keys the gateway's readiness reads.

A worker sets ``{topic_prefix}:worker:<instance>`` (TTL ``WORKER_TTL_S``, refreshed every
``WORKER_REFRESH_S``) once its agents run; a gateway is ready only while one such key exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from infra.settings import Settings

log = logging.getLogger("parley.redis")

WORKER_TTL_S = 15
PUBSUB_RETRY_S = 0.5
WORKER_REFRESH_S = 5


def redis_client(settings: Settings, timeout_s: float = 2.0) -> Redis:
    """A lazily connecting client (nothing is contacted until the first command)."""
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
    )


def worker_key(settings: Settings, instance: str) -> str:
    return f"{settings.topic_prefix}:worker:{instance}"


def worker_key_pattern(settings: Settings) -> str:
    return f"{settings.topic_prefix}:worker:*"


async def mark_worker_alive(redis: Redis, settings: Settings, instance: str) -> None:
    """Set (or refresh) this worker's liveness key; call every ``WORKER_REFRESH_S`` seconds."""
    await redis.set(worker_key(settings, instance), "1", ex=WORKER_TTL_S)


async def live_workers(redis: Redis, settings: Settings, limit: int = 100) -> list[str]:
    """Instance ids of workers whose liveness key has not expired."""
    prefix = worker_key(settings, "")
    found: list[str] = []
    async for key in redis.scan_iter(match=worker_key_pattern(settings), count=100):
        name = key if isinstance(key, str) else key.decode()
        found.append(name[len(prefix) :])
        if len(found) >= limit:
            break
    return found


async def read_messages(pubsub: PubSub, on_data: Callable[[bytes | str], None], what: str) -> None:
    """Hand the data of every message on ``pubsub``'s channels to ``on_data``, until cancelled.

    redis-py reconnects and re-subscribes inside ``get_message``; what was published while the
    connection was down is not replayed (pub/sub keeps nothing), so callers must tolerate a missed
    message. A read that fails is retried; ``on_data`` raising is logged and the loop goes on,
    since a reader that died would silently stop everything behind it."""
    while True:
        try:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("reading %s failed; retrying", what, exc_info=True)
            await asyncio.sleep(PUBSUB_RETRY_S)
            continue
        if message is None or message.get("type") != "message" or message.get("data") is None:
            continue
        try:
            on_data(message["data"])
        except Exception:
            log.exception("a message of %s was not taken", what)


async def close_pubsub(pubsub: PubSub) -> None:
    """Close a pub/sub connection (typed as untyped by some redis-py releases, typed by others)."""
    await cast(Any, pubsub).aclose()


class ChannelSubscription:
    """One pub/sub subscription of a process, read by a task until stopped; every message's data
    goes to ``on_data`` (see ``read_messages`` for what a reconnect loses)."""

    def __init__(self, redis: Redis, channel: str, on_data: Callable[[bytes | str], None], what: str) -> None:
        self._redis = redis
        self._channel = channel
        self._on_data = on_data
        self._what = what
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._pubsub = pubsub
        self._task = asyncio.create_task(read_messages(pubsub, self._on_data, self._what), name=self._what)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await close_pubsub(self._pubsub)
            self._pubsub = None
