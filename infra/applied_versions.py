"""Applied stream versions over Redis pub/sub: the worker tells every gateway what the read models hold.

One message per applied batch on ``<topic_prefix>:applied``: a compact JSON object
``{stream_id: highest stream version applied}``. Notifications only: a lost one delays an ack by
the gateway's bounded wait and its one fallback query, never loses data (see
``api.read_your_writes``).

Reconnects: redis-py re-subscribes the pub/sub connection by itself when it reconnects; what was
published while it was down is not replayed (pub/sub keeps nothing). The waits those messages
would have ended run to their bound and each makes its one query; the versions remembered before
the drop stay valid, since applied versions never go back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from redis.asyncio import Redis

from infra.redis_client import ChannelSubscription
from infra.settings import Settings

log = logging.getLogger("parley.applied_versions")


def applied_channel(settings: Settings) -> str:
    return f"{settings.topic_prefix}:applied"


def encode_versions(versions: Mapping[str, int]) -> str:
    return json.dumps(versions, separators=(",", ":"))


def decode_versions(data: str | bytes) -> dict[str, int]:
    """The versions of one message; ValueError if it is not a map of stream ids to versions >= 0."""
    decoded = json.loads(data)
    if not isinstance(decoded, dict):
        raise ValueError("not a JSON object")
    versions: dict[str, int] = {}
    for stream_id, version in decoded.items():
        if type(version) is not int or version < 0:
            raise ValueError(f"bad version for {stream_id!r}")
        versions[stream_id] = version
    return versions


class RedisAppliedVersions:
    """The worker's side (``streams.runtime.AppliedVersions``): publish what a batch applied."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._channel = applied_channel(settings)
        self._redis = redis

    async def publish(self, versions: Mapping[str, int]) -> None:
        if versions:
            await self._redis.publish(self._channel, encode_versions(versions))


class AppliedVersionsSubscriber:
    """The gateway's side (``api.read_your_writes.AppliedVersionsFeed``): one subscription per
    process, each message handed to ``on_applied``."""

    def __init__(self, settings: Settings, redis: Redis, on_applied: Callable[[Mapping[str, int]], None]) -> None:
        self._on_applied = on_applied
        self._subscription = ChannelSubscription(redis, applied_channel(settings), self._take, "applied versions")

    async def start(self) -> None:
        await self._subscription.start()

    async def stop(self) -> None:
        await self._subscription.stop()

    def _take(self, data: bytes | str) -> None:
        try:
            versions = decode_versions(data)
        except (ValueError, TypeError):
            log.warning("undecodable applied-versions message skipped")
            return
        self._on_applied(versions)
