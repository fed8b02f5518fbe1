"""Outcomes back to the gateway that awaits them: Redis pub/sub, one channel per gateway.

Outcomes are not records: the log holds the events and the refusals, and the worker
remembers every outcome by command id. So a reply needs no log of its own; a gateway that
misses one (it restarted, or the network blinked) answers `unavailable`, and the client's
retry with the same command_id gets the remembered outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from domain.envelope import Outcome
from infra.settings import Settings


def reply_channel(settings: Settings, gateway_id: str) -> str:
    return f"{settings.topic_prefix}:replies:{gateway_id}"


class RedisReplies:
    """The worker's side: publish an outcome to the channel of the gateway that asked."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._settings = settings
        self._redis = redis

    async def publish(self, outcomes: Sequence[Outcome]) -> None:
        """Every outcome of a batch in one round trip (a pipeline, no transaction)."""
        pipe = self._redis.pipeline(transaction=False)
        for outcome in outcomes:
            if outcome.reply_to:
                pipe.publish(reply_channel(self._settings, outcome.reply_to), outcome.model_dump_json())
        if len(pipe):
            await pipe.execute()
