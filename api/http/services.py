"""The gateway's composition root: every adapter built from Settings, started and closed together."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from api.http.metrics import GatewayMetrics
from api.rate_limits import RateLimiter
from api.read_your_writes import AppliedVersionsFeed, ReadYourWrites
from infra.applied_versions import AppliedVersionsSubscriber
from infra.kafka.command_bus import CommandBus
from infra.mongo.client import MongoDoc, mongo_client, mongo_db
from infra.mongo.read_models import ReadModels
from infra.provision import s3_client
from infra.rate_limit import RedisRateLimiter
from infra.redis_client import live_workers, redis_client
from infra.search_client import search_client
from infra.security.passwords import Passwords
from infra.security.tokens import TokenService
from infra.settings import Settings

log = logging.getLogger("parley.gateway")

READY_CHECK_TIMEOUT_S = 2.0


@dataclass
class GatewayServices:
    settings: Settings
    bus: CommandBus
    read_models: ReadModels
    tokens: TokenService
    passwords: Passwords
    metrics: GatewayMetrics
    mongo: AsyncMongoClient[MongoDoc]
    redis: Redis
    search: AsyncElasticsearch
    storage: Any  # minio.Minio (blocking: use it through asyncio.to_thread)
    read_your_writes: ReadYourWrites
    applied_versions: AppliedVersionsFeed  # feeds read_your_writes
    rate_limiter: RateLimiter

    @classmethod
    def build(cls, settings: Settings) -> GatewayServices:
        """Construct every adapter; nothing connects before :meth:`start`."""
        secret = settings.jwt_secret
        if not secret:  # Settings refuses this in production
            # Local mode without a configured secret: tokens only this process can verify.
            log.warning("no jwt_secret configured: using a random one for this process")
            secret = secrets.token_urlsafe(48)
        mongo = mongo_client(settings)
        redis = redis_client(settings)
        read_your_writes = ReadYourWrites()
        return cls(
            settings=settings,
            bus=CommandBus(settings, redis=redis),
            read_models=ReadModels(mongo_db(mongo, settings)),
            tokens=TokenService(
                secret, settings.jwt_algorithm, settings.access_token_ttl_s, settings.refresh_token_ttl_s
            ),
            passwords=Passwords(),
            metrics=GatewayMetrics(),
            mongo=mongo,
            redis=redis,
            search=search_client(settings, READY_CHECK_TIMEOUT_S),
            storage=s3_client(settings, timeout_s=READY_CHECK_TIMEOUT_S),
            read_your_writes=read_your_writes,
            applied_versions=AppliedVersionsSubscriber(settings, redis, read_your_writes.applied),
            rate_limiter=RedisRateLimiter(redis, f"{settings.topic_prefix}:ratelimit"),
        )

    @property
    def instance_id(self) -> str:
        return self.bus.instance_id

    async def start(self) -> None:
        # Subscribed before the first command goes out, so no notification of ours is missed.
        await self.applied_versions.start()
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.stop()
        await self.applied_versions.stop()
        for close in (self.search.close, self.redis.aclose, self.mongo.close):
            try:
                await close()
            except Exception:  # closing is best effort; the process is going away
                log.warning("closing a client failed", exc_info=True)

    # Readiness --------------------------------------------------------------------------
    async def readiness(self) -> dict[str, str]:
        """Each dependency's state ("ok" or why not), all checked concurrently within ~2 s."""
        checks: dict[str, Callable[[], Awaitable[None]]] = {
            "kafka": self.bus.ping,
            "mongodb": self._ping_mongo,
            "redis": self._ping_redis,
            "elasticsearch": self._ping_search,
            "s3": self._check_bucket,
            "worker": self._check_worker,
        }
        results = await asyncio.gather(*(_bounded(check) for check in checks.values()))
        return dict(zip(checks, results, strict=True))

    async def _ping_mongo(self) -> None:
        await self.mongo.admin.command("ping")

    async def _ping_redis(self) -> None:
        await self.redis.ping()

    async def _ping_search(self) -> None:
        await self.search.info()

    async def _check_bucket(self) -> None:
        bucket = self.settings.media_bucket
        if not await asyncio.to_thread(self.storage.bucket_exists, bucket):
            raise LookupError(f"bucket {bucket} does not exist")

    async def _check_worker(self) -> None:
        if not await live_workers(self.redis, self.settings, limit=1):
            raise LookupError("no worker is ready")


async def _bounded(check: Callable[[], Awaitable[None]]) -> str:
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            await check()
    except TimeoutError:
        return f"timed out after {READY_CHECK_TIMEOUT_S:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return "ok"
