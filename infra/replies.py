"""Outcomes back to the gateway that awaits them: Redis pub/sub, one channel per gateway.

Outcomes are not records: the log holds the events and the refusals, and the worker
remembers every outcome by command id. So a reply needs no log of its own; a gateway that
misses one (it restarted, or the network blinked) answers `unavailable`, and the client's
retry with the same command_id gets the remembered outcome.

A message on a gateway's channel is one outcome (a JSON object) or several (a JSON array of them):
the worker sends each gateway the outcomes of a batch in one message, and ``decode_replies``
reads either.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import TypeAdapter
from redis.asyncio import Redis

from domain.envelope import Outcome
from infra.settings import Settings


def reply_channel(settings: Settings, gateway_id: str) -> str:
    return f"{settings.topic_prefix}:replies:{gateway_id}"


_OUTCOMES: TypeAdapter[list[Outcome]] = TypeAdapter(list[Outcome])


def encode_replies(outcomes: Sequence[Outcome]) -> str:
    """One message for outcomes bound to the same gateway."""
    if len(outcomes) == 1:
        return outcomes[0].model_dump_json()
    return "[" + ",".join(outcome.model_dump_json() for outcome in outcomes) + "]"


def decode_replies(value: bytes | str) -> list[Outcome]:
    """The outcomes of one message (raises ``ValueError`` on anything else)."""
    text = value.decode() if isinstance(value, bytes) else value
    if text.lstrip().startswith("["):
        return _OUTCOMES.validate_json(text)
    return [Outcome.model_validate_json(text)]


class RedisReplies:
    """The worker's side: publish an outcome to the channel of the gateway that asked."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._settings = settings
        self._redis = redis

    async def publish(self, outcomes: Sequence[Outcome]) -> None:
        """Every outcome of a batch in one round trip (a pipeline, no transaction): one message per
        gateway, its outcomes in the batch's order."""
        by_gateway: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            if outcome.reply_to:
                by_gateway.setdefault(outcome.reply_to, []).append(outcome)
        if not by_gateway:
            return
        pipe = self._redis.pipeline(transaction=False)
        for gateway, theirs in by_gateway.items():
            pipe.publish(reply_channel(self._settings, gateway), encode_replies(theirs))
        await pipe.execute()
