"""Cached media download decisions (Redis, shared by every gateway; in memory for unit tests).

A decision is stored with the generation of its conversation and of its media item as they
were read BEFORE the read models that made it. The worker moves a conversation's generation
when someone leaves or is removed, and a media item's when it is deleted, before it announces
the new version (streams/runtime.py): a decision made from older read models then no longer
matches, and the next request decides again. Nothing is ever deleted by pattern.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from redis.asyncio import Redis


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    conversation_id: str | None = None  # None: no such media (a denial)
    object_key: str | None = None  # set when allowed
    filename: str | None = None


@dataclass(frozen=True)
class Generations:
    conversation: int
    media: int


class RedisAuthzCache:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _entry(self, user_id: str, media_id: str) -> str:
        return f"{self._prefix}:authz:{user_id}:{media_id}"

    def _conversation_gen(self, conversation_id: str) -> str:
        return f"{self._prefix}:authz-gen:c:{conversation_id}"

    def _media_gen(self, media_id: str) -> str:
        return f"{self._prefix}:authz-gen:m:{media_id}"

    async def media_generation(self, media_id: str) -> int:
        return int(await self._redis.get(self._media_gen(media_id)) or 0)

    async def conversation_generation(self, conversation_id: str) -> int:
        return int(await self._redis.get(self._conversation_gen(conversation_id)) or 0)

    async def decision(self, user_id: str, media_id: str) -> AccessDecision | None:
        raw = await self._redis.get(self._entry(user_id, media_id))
        if raw is None:
            return None
        stored = json.loads(raw)
        decision = AccessDecision(**stored["decision"])
        keys = [self._media_gen(media_id)]
        if decision.conversation_id is not None:
            keys.append(self._conversation_gen(decision.conversation_id))
        now = [int(v or 0) for v in await self._redis.mget(keys)]
        if now != stored["generations"][: len(now)]:
            return None
        return decision

    async def remember(
        self, user_id: str, media_id: str, decision: AccessDecision, generations: Generations, ttl_s: float
    ) -> None:
        value = {"decision": asdict(decision), "generations": [generations.media, generations.conversation]}
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        await self._redis.set(self._entry(user_id, media_id), json.dumps(value, separators=(",", ":")), px=ttl_ms)

    async def forget_conversation(self, conversation_id: str) -> None:
        await self._redis.incr(self._conversation_gen(conversation_id))

    async def forget_media(self, media_id: str) -> None:
        await self._redis.incr(self._media_gen(media_id))


class InMemoryAuthzCache:
    """The fake for unit tests: the same generations and expiry, on a clock the test may drive."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, AccessDecision, Generations]] = {}
        self._conversations: dict[str, int] = {}
        self._media: dict[str, int] = {}

    async def media_generation(self, media_id: str) -> int:
        return self._media.get(media_id, 0)

    async def conversation_generation(self, conversation_id: str) -> int:
        return self._conversations.get(conversation_id, 0)

    async def decision(self, user_id: str, media_id: str) -> AccessDecision | None:
        item = self._entries.get((user_id, media_id))
        if item is None or item[0] <= self._clock():
            return None
        _, decision, generations = item
        if generations.media != self._media.get(media_id, 0):
            return None
        conversation = decision.conversation_id
        if conversation is not None and generations.conversation != self._conversations.get(conversation, 0):
            return None
        return decision

    async def remember(
        self, user_id: str, media_id: str, decision: AccessDecision, generations: Generations, ttl_s: float
    ) -> None:
        self._entries[(user_id, media_id)] = (self._clock() + ttl_s, decision, generations)

    async def forget_conversation(self, conversation_id: str) -> None:
        self._conversations[conversation_id] = self._conversations.get(conversation_id, 0) + 1

    async def forget_media(self, media_id: str) -> None:
        self._media[media_id] = self._media.get(media_id, 0) + 1
