"""Applied stream versions over Redis pub/sub: the worker tells every gateway what the read models hold.

One message per applied batch on ``<topic_prefix>:applied``: a JSON object
``{stream_id: highest stream version applied}``. Notifications only: a lost one delays an ack by
the gateway's bounded wait, never loses data (see ``api.read_your_writes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from infra.settings import Settings

log = logging.getLogger("parley.applied_versions")


def applied_channel(settings: Settings) -> str:
    return f"{settings.topic_prefix}:applied"


class RedisAppliedVersions:
    """The worker's side: publish what a batch applied."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._channel = applied_channel(settings)
        self._redis = redis

    async def publish(self, versions: Mapping[str, int]) -> None:
        if versions:
            await self._redis.publish(self._channel, json.dumps(versions, separators=(",", ":")))


class AppliedVersionsSubscriber:
    """The gateway's side: one subscription per process, each message handed to ``on_applied``."""

    def __init__(self, settings: Settings, redis: Redis, on_applied: Callable[[Mapping[str, int]], None]) -> None:
        self._channel = applied_channel(settings)
        self._redis = redis
        self._on_applied = on_applied
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._pubsub = pubsub
        self._task = asyncio.create_task(self._read(pubsub), name="applied-versions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            try:
                # The client re-subscribes by itself after a reconnect; what was published meanwhile
                # is missed, and the waits it would have ended fall back to their one query.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading applied versions failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                data = json.loads(message["data"])
                versions = {str(k): int(v) for k, v in data.items()}
            except (ValueError, TypeError, AttributeError):
                log.warning("undecodable applied-versions message skipped")
                continue
            self._on_applied(versions)
