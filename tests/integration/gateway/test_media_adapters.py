"""The media adapters against the real servers: the S3 object store and the Redis authz cache."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from infra.authz_cache import RedisAuthzCache
from infra.objects import S3ObjectStore
from infra.redis_client import redis_client
from infra.settings import Settings
from tests.contracts.authz_cache import AuthzCacheContract
from tests.contracts.object_store import ObjectStoreContract


class TestS3ObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, stack_settings: Settings) -> S3ObjectStore:
        return S3ObjectStore(stack_settings)

    @pytest.fixture
    async def http(self) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(timeout=10) as client:
            yield client


class TestRedisAuthzCache(AuthzCacheContract):
    @pytest.fixture
    async def cache(self, stack_settings: Settings) -> AsyncIterator[RedisAuthzCache]:
        client: Redis = redis_client(stack_settings)
        try:
            yield RedisAuthzCache(client, "contract-authz")
        finally:
            await client.aclose()
