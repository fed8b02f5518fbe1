"""The gateway's services: every adapter it uses (built by ``api.bootstrap.gateway``), started and closed together."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from api.key_directory import SignatureVerifier
from api.media import MediaAccess
from api.metrics import GatewayMetrics
from api.rate_limits import RateLimiter
from api.read_your_writes import AppliedVersionsFeed, ReadYourWrites
from api.search import SearchQueries
from api.send_command import SendCommand
from infra.erasure import ErasedUsers
from infra.kafka.command_bus import CommandBus, Unavailable
from infra.mongo.client import MongoDoc
from infra.mongo.read_models import ReadModels
from infra.redis_client import WORKER_TTL_S, live_workers
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
    search_queries: SearchQueries
    signatures: SignatureVerifier  # checks a published signed prekey (keys:publish)
    media: MediaAccess  # media:* (object store, cached download decisions)
    erased_users: ErasedUsers  # users erased since start: their sockets are disconnected, their events refused
    name_index_key: bytes  # keys the username streams' hashes (domain/names.py)

    @property
    def instance_id(self) -> str:
        return self.bus.instance_id

    async def start(self) -> None:
        # Subscribed before the first command goes out, so no notification of ours is missed.
        await self.applied_versions.start()
        await self.erased_users.start()
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.stop()
        await self.erased_users.stop()
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
        results = await asyncio.gather(*(_bounded(name, check) for name, check in checks.items()))
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
            raise NotReady(f"the media bucket {bucket} does not exist")

    async def _check_worker(self) -> None:
        if not await live_workers(self.redis, self.settings, limit=1):
            raise NotReady(f"no worker has reported in the last {WORKER_TTL_S} s")


class NotReady(Exception):
    """A readiness check's answer, already in words."""


# What /ready calls each dependency in its reasons.
CHECK_NAMES = {
    "kafka": "Kafka",
    "mongodb": "MongoDB",
    "redis": "Redis",
    "elasticsearch": "Elasticsearch",
    "s3": "S3",
    "worker": "the worker check (Redis)",
}


def _failure_in_words(exc: BaseException) -> str:
    """A client library's failure said plainly: its own message names exception classes and retry
    pools, which mean nothing to an operator reading /ready (the gateway's debug log has them)."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(texts) < 5:
        texts.append(str(seen).lower())
        seen = seen.__cause__ or seen.__context__
    text = " ".join(texts)
    if "refused" in text or "connect call failed" in text or f"errno {errno.ECONNREFUSED}]" in text:
        return "the connection was refused"
    if "timed out" in text or "timeout" in text:
        return "the connection timed out"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "its host name does not resolve"
    if "auth" in text or "credential" in text or "access denied" in text:
        return "it refused our credentials"
    if "certificate" in text or "handshake" in text or "ssl error" in text or "sslerror" in text:
        return "the TLS handshake failed"
    if "reset" in text or "closed" in text or "broken pipe" in text:
        return "it closed the connection"
    return "it gave an unexpected answer (the gateway's debug log has the details)"


async def _bounded(name: str, check: Callable[[], Awaitable[None]]) -> str:
    """ "ok", or why not in words (an operator reads it; never an exception's class name)."""
    what = CHECK_NAMES.get(name, name)
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            await check()
    except TimeoutError:
        return f"{what} did not answer within {READY_CHECK_TIMEOUT_S:g} s"
    except (NotReady, Unavailable) as exc:  # our own messages, in words already
        return f"{what}: {exc}" if isinstance(exc, Unavailable) else str(exc)
    except Exception as exc:
        log.debug("readiness check %s failed", name, exc_info=True)
        return f"{what} cannot be reached: {_failure_in_words(exc)}"
    return "ok"
