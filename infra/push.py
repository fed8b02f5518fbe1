"""Server pushes through python-socketio's Redis manager: every gateway delivers to its own sockets.

A projected batch's pushes leave in the batch's order (so each conversation's pushes arrive in seq
order), as the messages python-socketio's own ``emit`` would publish, gathered into one message of
method ``BATCH_METHOD`` (at most ``BATCH_MAX`` each, in one pipeline): every gateway reads one
message per batch instead of one per push. ``BatchReadingRedisManager``, the gateways' manager,
hands the messages of a batch to python-socketio one by one, in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from typing import Any

import socketio
from redis.asyncio import Redis

from infra.settings import Settings
from projections.pushes import Push

# The messages an ``emit`` of the current task publishes, while a batch is being gathered.
_gathered: ContextVar[list[dict[str, Any]] | None] = ContextVar("parley_gathered_pushes", default=None)


# A message holding several of python-socketio's own (``messages``); python-socketio itself ignores it.
BATCH_METHOD = "parley:batch"
BATCH_MAX = 256


def socket_channel(settings: Settings) -> str:
    return f"{settings.topic_prefix}-socketio"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


class _PublishOnlyManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager, publishing through the process' own Redis client
    instead of one it would make for itself (it never subscribes: write-only).

    Its own ``_publish`` logs a failure and returns; here a failure raises, so the caller's
    retries see it."""

    def __init__(self, redis: Redis, channel: str) -> None:
        super().__init__("redis://unused", channel=channel, write_only=True)
        self._shared = redis

    def _redis_connect(self) -> None:
        self.redis = self._shared
        self.pubsub = None
        self.connected = True

    async def _publish(self, data: dict[str, Any]) -> None:
        gathered = _gathered.get()
        if gathered is not None:
            gathered.append(data)
            return
        await self._shared.publish(self.channel, self.json.dumps(data))

    async def publish_all(self, messages: Sequence[dict[str, Any]]) -> None:
        async with self._shared.pipeline(transaction=False) as pipe:
            for start in range(0, len(messages), BATCH_MAX):
                chunk = list(messages[start : start + BATCH_MAX])
                one = chunk[0] if len(chunk) == 1 else {"method": BATCH_METHOD, "messages": chunk}
                pipe.publish(self.channel, self.json.dumps(one))
            await pipe.execute()


class BatchReadingRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """The gateways' manager: python-socketio's Redis manager, which also reads the worker's
    batches of pushes (``BATCH_METHOD``) and hands their messages on one by one, in order."""

    async def _listen(self) -> AsyncIterator[Any]:
        async for data in super()._listen():
            try:
                message = self.json.loads(data)
            except (ValueError, TypeError):
                yield data  # python-socketio skips what it cannot read
                continue
            if isinstance(message, dict) and message.get("method") == BATCH_METHOD:
                for item in message.get("messages") or ():
                    if isinstance(item, dict):
                        yield item
            else:
                yield message


class RedisPusher:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._manager = _PublishOnlyManager(redis, socket_channel(settings))

    async def push_all(self, pushes: Sequence[Push]) -> None:
        """Publish ``pushes`` in this order, in one round trip, each once for all its recipients (the
        rooms of all of them in one message); raises if Redis does not take them (a retry may
        publish some twice: pushes are at-least-once)."""
        gathered: list[dict[str, Any]] = []
        token = _gathered.set(gathered)
        try:
            for push in pushes:
                rooms = [user_room(user_id) for user_id in push.user_ids]
                if rooms:
                    await self._manager.emit(push.event, push.data, room=rooms, namespace="/")
        finally:
            _gathered.reset(token)
        if gathered:
            await self._manager.publish_all(gathered)
