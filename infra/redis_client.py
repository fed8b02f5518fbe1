"""Redis: the connection factory and the worker-liveness keys the gateway's readiness reads.

A worker sets ``{topic_prefix}:worker:<instance>`` (TTL ``WORKER_TTL_S``, refreshed every
``WORKER_REFRESH_S``) once its agents run; a gateway is ready only while one such key exists.
"""

from __future__ import annotations

from redis.asyncio import Redis

from infra.settings import Settings

WORKER_TTL_S = 15
WORKER_REFRESH_S = 5


def redis_client(settings: Settings, timeout_s: float = 2.0) -> Redis:
    """A lazily connecting client (nothing is contacted until the first command)."""
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
    )


def worker_key(settings: Settings, instance: str) -> str:
    return f"{settings.topic_prefix}:worker:{instance}"


def worker_key_pattern(settings: Settings) -> str:
    return f"{settings.topic_prefix}:worker:*"


async def mark_worker_alive(redis: Redis, settings: Settings, instance: str) -> None:
    """Set (or refresh) this worker's liveness key; call every ``WORKER_REFRESH_S`` seconds."""
    await redis.set(worker_key(settings, instance), "1", ex=WORKER_TTL_S)


async def live_workers(redis: Redis, settings: Settings, limit: int = 100) -> list[str]:
    """Instance ids of workers whose liveness key has not expired."""
    prefix = worker_key(settings, "")
    found: list[str] = []
    async for key in redis.scan_iter(match=worker_key_pattern(settings), count=100):
        name = key if isinstance(key, str) else key.decode()
        found.append(name[len(prefix) :])
        if len(found) >= limit:
            break
    return found
