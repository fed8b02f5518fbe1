"""The gateway's services: every adapter it uses (built by ``api.bootstrap.gateway``), started and closed together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from api.key_directory import SignatureVerifier
from api.metrics import GatewayMetrics
from api.rate_limits import RateLimiter
from api.read_your_writes import AppliedVersionsFeed, ReadYourWrites
from api.send_command import SendCommand
from infra.kafka.command_bus import CommandBus
from infra.mongo.client import MongoDoc
from infra.mongo.read_models import ReadModels
from infra.redis_client import live_workers
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
    send: SendCommand  # the "send a command" use case (over ``bus`` and ``read_your_writes``)
    signatures: SignatureVerifier  # checks a published signed prekey (keys:publish)

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
