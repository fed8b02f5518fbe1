"""The SearchCache contract (api/search.py), run against every adapter of it (real time, short TTLs)."""

from __future__ import annotations

import asyncio
import uuid

from api.search import SearchCache


def fresh_key() -> str:
    return f"contract:search:{uuid.uuid4().hex}"


class SearchCacheContract:
    """Subclasses provide a ``cache`` fixture."""

    async def test_a_missing_key_is_none(self, cache: SearchCache) -> None:
        assert await cache.get(fresh_key()) is None

    async def test_what_is_put_is_got_back(self, cache: SearchCache) -> None:
        key = fresh_key()
        value = {"hits": [{"message_id": "m", "snippet": "<em>é</em> ✓", "seq": 3}]}
        await cache.put(key, value, 30)
        assert await cache.get(key) == value
        assert await cache.get(fresh_key()) is None

    async def test_a_value_expires_after_its_ttl(self, cache: SearchCache) -> None:
        key = fresh_key()
        await cache.put(key, {"hits": []}, 0.2)
        assert await cache.get(key) == {"hits": []}
        await asyncio.sleep(0.3)
        assert await cache.get(key) is None

    async def test_put_replaces(self, cache: SearchCache) -> None:
        key = fresh_key()
        await cache.put(key, {"hits": [1]}, 30)
        await cache.put(key, {"hits": [2]}, 30)
        assert await cache.get(key) == {"hits": [2]}
