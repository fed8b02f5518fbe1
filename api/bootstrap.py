"""The composition roots: every adapter of a process kind, built from Settings in one place.

- :func:`gateway`: the gateway's services (HTTP and Socket.IO share them);
- :func:`worker`: the worker's Faust app, whose services are built inside its event loop, and its metrics.

Entry points (``api.http.app``, ``parley worker``) only call these. Nothing connects here: the
clients connect when the process starts them. One Redis client per process: every Redis user of
the process (the command bus's outcome subscription, the applied-versions feed, the rate limiter,
the worker's pusher, replies and liveness) takes its connections from that client's pool. The one
exception is python-socketio's manager in the gateway, which subscribes with a bytes client of its
own (the shared client decodes responses).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.media import MediaAccess
from api.metrics import GatewayMetrics
from api.read_your_writes import ReadYourWrites
from api.search import SearchQueries
from api.send_command import SendCommand
from api.services import READY_CHECK_TIMEOUT_S, GatewayServices
from infra.applied_versions import AppliedVersionsSubscriber
from infra.authz_cache import RedisAuthzCache
from infra.erasure import ErasedUsers
from infra.kafka.command_bus import CommandBus
from infra.mongo.client import mongo_client, mongo_db
from infra.mongo.key_store import key_ring, keys_required
from infra.mongo.read_models import ReadModels
from infra.objects import S3ObjectStore
from infra.provision import s3_client
from infra.rate_limit import RedisRateLimiter
from infra.redis_client import redis_client
from infra.search_cache import RedisSearchCache
from infra.search_client import search_client
from infra.search_index import ElasticsearchIndex
from infra.search_indexes import alias_names
from infra.security.passwords import Passwords
from infra.security.shredding import username_index_key
from infra.security.signatures import Ed25519Signatures
from infra.security.tokens import TokenService
from infra.settings import Settings
from infra.worker_metrics import LagSample, WorkerMetrics

if TYPE_CHECKING:
    import faust

log = logging.getLogger("parley.bootstrap")

# How long an answer waits for the read models to show a command's effect (docs/ARCHITECTURE.md).
READ_YOUR_WRITES_BOUND_S = 2.0


def authz_prefix(settings: Settings) -> str:
    return f"{settings.topic_prefix}:media"


def gateway(settings: Settings) -> GatewayServices:
    """Every adapter of a gateway process; nothing connects before ``GatewayServices.start``."""
    keys_required(settings)
    secret = settings.jwt_secret
    if not secret:  # Settings refuses this in production
        # Local mode without a configured secret: tokens only this process can verify.
        log.warning("no jwt_secret configured: using a random one for this process")
        secret = secrets.token_urlsafe(48)
    mongo = mongo_client(settings)
    redis = redis_client(settings)
    read_your_writes = ReadYourWrites()
    read_models = ReadModels(mongo_db(mongo, settings))
    search = search_client(settings, READY_CHECK_TIMEOUT_S)
    bus = CommandBus(settings, redis=redis)
    storage = s3_client(settings, timeout_s=READY_CHECK_TIMEOUT_S)
    return GatewayServices(
        settings=settings,
        bus=bus,
        read_models=read_models,
        tokens=TokenService(secret, settings.jwt_algorithm, settings.access_token_ttl_s, settings.refresh_token_ttl_s),
        passwords=Passwords(),
        metrics=GatewayMetrics(),
        mongo=mongo,
        redis=redis,
        search=search,
        storage=storage,
        read_your_writes=read_your_writes,
        applied_versions=AppliedVersionsSubscriber(settings, redis, read_your_writes.applied),
        rate_limiter=RedisRateLimiter(redis, f"{settings.topic_prefix}:ratelimit"),
        send=SendCommand(bus, read_your_writes, settings.command_timeout_s, READ_YOUR_WRITES_BOUND_S),
        search_queries=SearchQueries(
            index=ElasticsearchIndex(search, alias_names(settings)),
            cache=RedisSearchCache(redis),
            memberships=read_models,
            namespace=f"{settings.topic_prefix}:search",
        ),
        signatures=Ed25519Signatures(),
        erased_users=ErasedUsers(settings, redis),
        name_index_key=username_index_key(settings.master_key),
        media=MediaAccess(
            settings,
            read_models,
            S3ObjectStore(settings, storage),
            RedisAuthzCache(redis, authz_prefix(settings)),
        ),
    )


@dataclass(frozen=True)
class Worker:
    app: faust.App
    metrics: WorkerMetrics  # served by the entry point on Settings.worker_metrics_port


def worker(settings: Settings) -> Worker:
    """The worker's Faust app and metrics; its clients are built lazily inside the worker's event loop."""
    # Imported here: a gateway process never loads Faust or the projection runtime.
    from infra.applied_versions import RedisAppliedVersions
    from infra.erasure import ErasureEffects
    from infra.kafka.log_reader import KafkaRecordSource
    from infra.media_sweeper import MediaSweeper
    from infra.mongo.audit_trail import AuditTrail
    from infra.mongo.documents import Positions, ProjectionRegistry
    from infra.mongo.partners import MongoConversationPartners
    from infra.push import RedisPusher
    from infra.rebuild import projection_status
    from infra.redis_client import mark_worker_alive
    from infra.replies import RedisReplies
    from infra.search_store import SearchStore
    from streams.app import WorkerServices, create_app
    from streams.runtime import DeadLetters, ProjectionRuntime, instance_name

    name = instance_name(settings)
    worker_dir = settings.worker_state_dir or settings.data_dir / "worker" / settings.worker_id
    worker_dir.mkdir(parents=True, exist_ok=True)

    keys_required(settings)

    async def services(app: faust.App, dead_letters: DeadLetters) -> WorkerServices:
        client = mongo_client(settings)
        db = mongo_db(client, settings)
        redis = redis_client(settings)
        registry = ProjectionRegistry(db)
        keys = key_ring(settings, client)

        async def media_collection() -> Any:
            return db[await registry.live_collection("media")]

        runtime = ProjectionRuntime(
            settings=settings,
            registry=registry,
            positions=Positions(db),
            database=db,
            trail=AuditTrail(db),
            pusher=RedisPusher(settings, redis),
            dead_letters=dead_letters,
            applied=RedisAppliedVersions(settings, redis),
            search=SearchStore(search_client(settings), alias_names(settings), aliases=True),
            partners=MongoConversationPartners(db, registry),
            authz=RedisAuthzCache(redis, authz_prefix(settings)),
            log_source=KafkaRecordSource(settings),
            keys=keys,
            erasure=ErasureEffects(
                settings,
                redis,
                S3ObjectStore(settings),
                media_collection,
                RedisAuthzCache(redis, authz_prefix(settings)),
            ),
        )
        sweeper = MediaSweeper(settings, ReadModels(db), S3ObjectStore(settings), db)

        async def heartbeat() -> None:
            await mark_worker_alive(redis, settings, name)

        async def lag() -> Sequence[LagSample]:
            return [
                LagSample(status.name, part.topic, part.partition, part.position, part.end)
                for status in await projection_status(settings)
                for part in status.partitions
            ]

        replies = RedisReplies(settings, redis)
        return WorkerServices(
            projections=runtime,
            dead_letters=dead_letters,
            replies=replies,
            heartbeat=heartbeat,
            lag=lag,
            sweep_media=sweeper.sweep,
            keys=keys,
        )

    metrics = WorkerMetrics()
    return Worker(create_app(settings, str(worker_dir), services, metrics), metrics)
