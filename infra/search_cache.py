"""Search result caches: Redis (shared by every gateway process) and in memory (unit tests).

Values are JSON; keys come hashed from the search use case (api/search.py, ``cache_key``), so no
query text is ever in a Redis key. Errors are not swallowed here: the use case decides (it warns
and answers uncached).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis


class RedisSearchCache:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self._redis.get(key)
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        await self._redis.set(key, json.dumps(value, separators=(",", ":")), px=max(1, math.ceil(ttl_s * 1000)))


class InMemorySearchCache:
    """The fake for unit tests: the same expiry, on a clock the test may drive."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, tuple[float, str]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        item = self._items.get(key)
        if item is None or item[0] <= self._clock():
            self._items.pop(key, None)
            return None
        value = json.loads(item[1])
        return value if isinstance(value, dict) else None

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        self._items[key] = (self._clock() + ttl_s, json.dumps(value))
