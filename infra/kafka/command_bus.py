"""The gateway's side of the command/outcome exchange.

A gateway publishes a :class:`CommandEnvelope` to the commands topic (key: aggregate id) and
awaits the worker's :class:`Outcome` on its own Redis channel (``infra.replies``), subscribed
before the first command goes out, so no outcome of one of our commands can be missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from domain.envelope import CommandEnvelope, Outcome, Rejection
from infra.kafka.codec import encode_command, encode_rejection
from infra.redis_client import close_pubsub, read_messages
from infra.replies import decode_replies, reply_channel
from infra.settings import Settings

log = logging.getLogger("parley.gateway.command_bus")

_Client = TypeVar("_Client", bound=AIOKafkaProducer)


class Unavailable(Exception):
    """The command could not be delivered or no outcome came back in time."""


class CommandBus:
    def __init__(
        self,
        settings: Settings,
        *,
        redis: Redis | None = None,
        instance_id: str | None = None,
        request_timeout_ms: int = 5000,
        rejection_timeout_s: float = 2.0,
    ) -> None:
        """``redis``: the process' client, whose pool the outcome subscription takes a connection
        from (the caller closes it); without one the bus makes and closes its own."""
        self._settings = settings
        self._shared_redis = redis
        self.instance_id = instance_id or settings.instance_id or f"gateway-{uuid.uuid4()}"
        self._request_timeout_ms = request_timeout_ms
        self._rejection_timeout_s = rejection_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, list[asyncio.Future[Outcome]]] = {}

    # Life cycle -------------------------------------------------------------------------
    async def start(self, wait_for_topic_s: float = 30.0) -> None:
        """Subscribe to this gateway's outcome channel, then connect the producer.

        Retries for up to ``wait_for_topic_s`` while the broker is not reachable yet.
        """
        deadline = time.monotonic() + wait_for_topic_s
        redis = self._shared_redis or Redis.from_url(self._settings.redis_url, socket_connect_timeout=2.0)
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(reply_channel(self._settings, self.instance_id))
        except RedisError as exc:
            await close_pubsub(pubsub)
            if self._shared_redis is None:
                await redis.aclose()
            raise Unavailable(f"cannot subscribe to outcomes: {exc}") from exc
        try:
            producer = await _started(
                deadline,
                lambda: AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap,
                    client_id=self.instance_id,
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=self._request_timeout_ms,
                    linger_ms=0,
                ),
            )
        except BaseException:
            await close_pubsub(pubsub)
            if self._shared_redis is None:
                await redis.aclose()
            raise
        self._producer, self._redis, self._pubsub = producer, redis, pubsub
        self._reader = asyncio.create_task(self._read_replies(), name=f"replies-{self.instance_id}")
        log.info("command bus started", extra={"sid": self.instance_id})

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        for futures in self._pending.values():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(Unavailable("gateway is shutting down"))
        self._pending.clear()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await close_pubsub(self._pubsub)
        if self._redis is not None and self._shared_redis is None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        self._producer, self._redis, self._pubsub = None, None, None

    @property
    def started(self) -> bool:
        return self._producer is not None

    # Commands ---------------------------------------------------------------------------
    async def execute(self, envelope: CommandEnvelope, timeout: float) -> Outcome:  # noqa: ASYNC109
        """Publish the command and await its outcome; :class:`Unavailable` after ``timeout``."""
        producer = self._producer
        if producer is None:
            raise Unavailable("command bus is not started")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        waiting = self._pending.setdefault(envelope.command_id, [])
        waiting.append(fut)
        try:
            async with asyncio.timeout(timeout):
                key, value, headers = encode_command(envelope)
                await producer.send_and_wait(self._settings.commands_topic, value, key=key, headers=headers)
                return await fut
        except TimeoutError as exc:
            raise Unavailable(f"no outcome for {envelope.type} within {timeout:g}s") from exc
        except KafkaError as exc:
            raise Unavailable(f"could not publish {envelope.type}: {exc}") from exc
        finally:
            with contextlib.suppress(ValueError):
                waiting.remove(fut)
            if not waiting and self._pending.get(envelope.command_id) is waiting:
                del self._pending[envelope.command_id]

    async def reject(self, rejection: Rejection) -> None:
        """Record a refused command in the rejections topic (bounded; a failure is only logged)."""
        producer = self._producer
        if producer is None:
            log.warning(
                "rejection not recorded: command bus is not started", extra={"command_id": rejection.command_id}
            )
            return
        key, value, headers = encode_rejection(rejection)
        try:
            async with asyncio.timeout(self._rejection_timeout_s):
                await producer.send_and_wait(self._settings.refusals_topic, value, key=key, headers=headers)
        except (TimeoutError, KafkaError) as exc:
            extra = {"command_id": rejection.command_id, "correlation_id": rejection.correlation_id}
            log.warning("rejection not recorded: %s", exc, extra=extra)

    async def publish_rejection(
        self,
        *,
        command_id: str,
        command_type: str,
        aggregate_id: str | None,
        actor_id: str | None,
        correlation_id: str,
        code: str,
        message: str,
        stage: str = "gateway",
    ) -> Rejection:
        """Build and record a Rejection for a command the gateway itself refused."""
        rejection = Rejection(
            rejection_id=str(uuid.uuid4()),
            command_id=command_id,
            command_type=command_type,
            aggregate_id=aggregate_id,
            actor_id=actor_id,
            correlation_id=correlation_id,
            code=code,
            message=message,
            occurred_at=datetime.now(UTC),
            stage=stage,
        )
        await self.reject(rejection)
        return rejection

    async def ping(self) -> None:
        """A metadata round trip to the cluster (readiness)."""
        if self._producer is None:
            raise Unavailable("command bus is not started")
        await self._producer.client.fetch_all_metadata()

    # Replies ----------------------------------------------------------------------------
    async def _read_replies(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        # An outcome published while the subscription reconnects is lost, and its command answers
        # `unavailable` (a retry with the same command_id gets the remembered outcome).
        await read_messages(pubsub, self._resolve, "outcomes")

    def _resolve(self, value: bytes | str | None) -> None:
        if value is None:
            return
        try:
            outcomes = decode_replies(value)
        except ValueError:
            log.warning("undecodable outcome skipped")
            return
        for outcome in outcomes:
            if outcome.reply_to != self.instance_id:
                continue
            for fut in self._pending.pop(outcome.command_id, []):
                if not fut.done():
                    fut.set_result(outcome)


async def _started(deadline: float, make: Callable[[], _Client]) -> _Client:
    """Start a fresh client, retrying with back-off while the broker is unreachable."""
    delay = 0.2
    while True:
        client = make()
        try:
            await client.start()
            return client
        except KafkaError:
            with contextlib.suppress(Exception):
                await client.stop()
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
