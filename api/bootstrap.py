"""The composition roots: every adapter of a process kind, built from Settings in one place.

- :func:`gateway`: the gateway's services (HTTP and Socket.IO share them);
- :func:`worker`: the worker's Faust app, whose services are built inside its event loop.

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
from typing import TYPE_CHECKING

from api.metrics import GatewayMetrics
from api.read_your_writes import ReadYourWrites
from api.send_command import SendCommand
from api.services import READY_CHECK_TIMEOUT_S, GatewayServices
from infra.applied_versions import AppliedVersionsSubscriber
from infra.kafka.command_bus import CommandBus
from infra.mongo.client import mongo_client, mongo_db
from infra.mongo.read_models import ReadModels
from infra.provision import s3_client
from infra.rate_limit import RedisRateLimiter
from infra.redis_client import redis_client
from infra.search_client import search_client
from infra.security.passwords import Passwords
from infra.security.signatures import Ed25519Signatures
from infra.security.tokens import TokenService
from infra.settings import Settings

if TYPE_CHECKING:
    import faust

log = logging.getLogger("parley.bootstrap")

# How long an answer waits for the read models to show a command's effect (docs/ARCHITECTURE.md).
READ_YOUR_WRITES_BOUND_S = 2.0


def gateway(settings: Settings) -> GatewayServices:
    """Every adapter of a gateway process; nothing connects before ``GatewayServices.start``."""
    secret = settings.jwt_secret
    if not secret:  # Settings refuses this in production
        # Local mode without a configured secret: tokens only this process can verify.
        log.warning("no jwt_secret configured: using a random one for this process")
        secret = secrets.token_urlsafe(48)
    mongo = mongo_client(settings)
    redis = redis_client(settings)
    read_your_writes = ReadYourWrites()
    bus = CommandBus(settings, redis=redis)
    return GatewayServices(
        settings=settings,
        bus=bus,
        read_models=ReadModels(mongo_db(mongo, settings)),
        tokens=TokenService(secret, settings.jwt_algorithm, settings.access_token_ttl_s, settings.refresh_token_ttl_s),
        passwords=Passwords(),
        metrics=GatewayMetrics(),
        mongo=mongo,
        redis=redis,
        search=search_client(settings, READY_CHECK_TIMEOUT_S),
        storage=s3_client(settings, timeout_s=READY_CHECK_TIMEOUT_S),
        read_your_writes=read_your_writes,
        applied_versions=AppliedVersionsSubscriber(settings, redis, read_your_writes.applied),
        rate_limiter=RedisRateLimiter(redis, f"{settings.topic_prefix}:ratelimit"),
        send=SendCommand(bus, read_your_writes, settings.command_timeout_s, READ_YOUR_WRITES_BOUND_S),
        signatures=Ed25519Signatures(),
    )


def worker(settings: Settings) -> faust.App:
    """The worker's Faust app; its clients are built lazily inside the worker's event loop."""
    # Imported here: a gateway process never loads Faust or the projection runtime.
    from infra.applied_versions import RedisAppliedVersions
    from infra.mongo.audit_trail import AuditTrail
    from infra.mongo.documents import Positions, ProjectionRegistry
    from infra.mongo.partners import MongoConversationPartners
    from infra.push import RedisPusher
    from infra.redis_client import mark_worker_alive
    from infra.replies import RedisReplies
    from streams.app import WorkerServices, create_app
    from streams.runtime import DeadLetters, ProjectionRuntime, instance_name

    name = instance_name(settings)
    worker_dir = settings.data_dir / "worker" / settings.worker_id
    worker_dir.mkdir(parents=True, exist_ok=True)

    async def services(app: faust.App, dead_letters: DeadLetters) -> WorkerServices:
        db = mongo_db(mongo_client(settings), settings)
        redis = redis_client(settings)
        registry = ProjectionRegistry(db)
        runtime = ProjectionRuntime(
            settings=settings,
            registry=registry,
            positions=Positions(db),
            database=db,
            trail=AuditTrail(db),
            pusher=RedisPusher(settings, redis),
            dead_letters=dead_letters,
            applied=RedisAppliedVersions(settings, redis),
            partners=MongoConversationPartners(db, registry),
        )

        async def heartbeat() -> None:
            await mark_worker_alive(redis, settings, name)

        replies = RedisReplies(settings, redis)
        return WorkerServices(projections=runtime, dead_letters=dead_letters, replies=replies, heartbeat=heartbeat)

    return create_app(settings, str(worker_dir), services)
