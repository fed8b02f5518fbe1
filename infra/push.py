"""Server pushes through python-socketio's Redis manager: every gateway delivers to its own sockets."""

from __future__ import annotations

import socketio

from infra.settings import Settings
from projections.pushes import Push


def socket_channel(settings: Settings) -> str:
    return f"{settings.topic_prefix}-socketio"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


class RedisPusher:
    def __init__(self, settings: Settings) -> None:
        self._manager = socketio.AsyncRedisManager(
            settings.redis_url, channel=socket_channel(settings), write_only=True
        )

    async def push(self, push: Push) -> None:
        for user_id in push.user_ids:
            await self._manager.emit(push.event, push.data, room=user_room(user_id), namespace="/")
