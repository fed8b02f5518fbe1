"""What an erasure does beyond the read models: objects, caches and the gateways.

The projection worker calls ``ErasureEffects.erased`` when it applies a ``UserErased`` (after it
redacted every view): the user's uploaded objects are removed from the object store, cached search
results (which may quote their messages) are dropped, and the gateways are told, so that they
disconnect the user's sockets at once. Each step is idempotent; the caller retries the whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from infra.media_sweeper import Objects
from infra.redis_client import ChannelSubscription
from infra.settings import Settings

log = logging.getLogger("parley.erasure")


def erased_channel(settings: Settings) -> str:
    """Where the gateways hear of erased users (their sockets are disconnected)."""
    return f"{settings.topic_prefix}:erased"


def search_cache_namespace(settings: Settings) -> str:
    return f"{settings.topic_prefix}:search"


class ErasureEffects:
    def __init__(self, settings: Settings, redis: Redis, objects: Objects, media: Any, authz: Any) -> None:
        """``media``: gives the live media collection (its name moves with rebuilds); ``authz``: the
        cached media download decisions (infra/authz_cache.py), which name the objects."""
        self._settings = settings
        self._redis = redis
        self._objects = objects
        self._media = media
        self._authz = authz

    async def erased(self, user_id: str) -> None:
        collection = await self._media()
        docs = [doc async for doc in collection.find({"uploader_id": user_id}, {"object_key": 1})]
        for doc in docs:
            await self._objects.remove(str(doc["object_key"]))
            await self._authz.forget_media(str(doc["_id"]))
        keys = docs
        cleared = 0
        async for cache_key in self._redis.scan_iter(match=f"{search_cache_namespace(self._settings)}:*", count=500):
            cleared += int(await self._redis.delete(cache_key))
        await self._redis.publish(erased_channel(self._settings), user_id)
        log.info(
            "erasure of %s: %d objects removed, %d cached searches dropped, gateways told",
            user_id,
            len(keys),
            cleared,
            extra={"user_id": user_id},
        )


class ErasedUsers:
    """The gateway's side: the users erased since it started, and a hook run for each (it
    disconnects their sockets). A gateway that missed a message (Redis reconnecting) still refuses
    them: every socket connect and token refresh asks the users view, which shows them erased."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.users: set[str] = set()
        self.on_erased: Callable[[str], None] | None = None
        self._subscription = ChannelSubscription(redis, erased_channel(settings), self._take, "erased users")

    async def start(self) -> None:
        await self._subscription.start()

    async def stop(self) -> None:
        await self._subscription.stop()

    def _take(self, data: bytes | str) -> None:
        user_id = data.decode() if isinstance(data, bytes) else data
        self.users.add(user_id)
        if self.on_erased is not None:
            self.on_erased(user_id)
