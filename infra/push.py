"""Server pushes through python-socketio's Redis manager: every gateway delivers to its own sockets."""

from __future__ import annotations

import socketio
from redis.asyncio import Redis

from infra.settings import Settings
from projections.pushes import Push


def socket_channel(settings: Settings) -> str:
    return f"{settings.topic_prefix}-socketio"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


class _PublishOnlyManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager, publishing through the process' own Redis client
    instead of one it would make for itself (it never subscribes: write-only)."""

    def __init__(self, redis: Redis, channel: str) -> None:
        super().__init__("redis://unused", channel=channel, write_only=True)
        self._shared = redis

    def _redis_connect(self) -> None:
        self.redis = self._shared
        self.pubsub = None
        self.connected = True


class RedisPusher:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._manager = _PublishOnlyManager(redis, socket_channel(settings))

    async def push(self, push: Push) -> None:
        """One publish for every recipient: the rooms of all of them in one message."""
        rooms = [user_room(user_id) for user_id in push.user_ids]
        if rooms:
            await self._manager.emit(push.event, push.data, room=rooms, namespace="/")
