"""The gateway's side of the command/reply exchange over Kafka.

A gateway publishes a :class:`CommandEnvelope` to the commands topic (key: aggregate id) and
awaits the worker's :class:`Outcome` on the replies topic. Replies are read by a consumer with
no group that is assigned every partition of the replies topic and positioned at its end
before the first command goes out, so no reply to one of our commands can be missed and none
of the old ones is replayed. Outcomes addressed to other gateway instances are skipped.
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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from domain.envelope import CommandEnvelope, Outcome, Rejection
from infra.kafka.codec import decode_outcome, encode_command, encode_rejection
from infra.settings import Settings

log = logging.getLogger("parley.gateway.command_bus")

_Client = TypeVar("_Client", AIOKafkaProducer, AIOKafkaConsumer)


class Unavailable(Exception):
    """The command could not be delivered or no outcome came back in time."""


class CommandBus:
    def __init__(
        self,
        settings: Settings,
        *,
        instance_id: str | None = None,
        request_timeout_ms: int = 5000,
        fetch_max_wait_ms: int | None = None,
        rejection_timeout_s: float = 2.0,
    ) -> None:
        self._settings = settings
        self.instance_id = instance_id or settings.instance_id or f"gateway-{uuid.uuid4()}"
        self._request_timeout_ms = request_timeout_ms
        self._fetch_max_wait_ms = fetch_max_wait_ms if fetch_max_wait_ms is not None else settings.kafka_fetch_wait_ms
        self._rejection_timeout_s = rejection_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, list[asyncio.Future[Outcome]]] = {}

    # Life cycle -------------------------------------------------------------------------
    async def start(self, wait_for_topic_s: float = 30.0) -> None:
        """Connect, position the replies consumer at the end, then start reading replies.

        Retries for up to ``wait_for_topic_s`` while the broker or the replies topic is not
        there yet (topics are created by whoever provisions the cluster).
        """
        bootstrap = self._settings.kafka_bootstrap
        deadline = time.monotonic() + wait_for_topic_s
        producer = await _started(
            deadline,
            lambda: AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=self.instance_id,
                acks="all",
                enable_idempotence=False,  # the local broker refuses InitProducerId
                request_timeout_ms=self._request_timeout_ms,
                linger_ms=0,
            ),
        )
        consumer: AIOKafkaConsumer | None = None
        try:
            consumer = await _started(
                deadline,
                lambda: AIOKafkaConsumer(
                    bootstrap_servers=bootstrap,
                    client_id=f"{self.instance_id}-replies",
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="latest",
                    fetch_max_wait_ms=self._fetch_max_wait_ms,
                    request_timeout_ms=max(self._request_timeout_ms, 2 * self._fetch_max_wait_ms + 1000),
                ),
            )
            topic = self._settings.replies_topic
            while True:
                await consumer.topics()  # a metadata request for all topics: never auto-creates one
                partitions = consumer.partitions_for_topic(topic)
                if partitions:
                    break
                if time.monotonic() > deadline:
                    raise Unavailable(f"replies topic {topic} does not exist")
                await asyncio.sleep(0.25)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the end offsets now, before any command is sent
                await consumer.position(tp)
        except BaseException:
            await _stop_quietly(consumer, producer)
            raise
        self._producer, self._consumer = producer, consumer
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
        await _stop_quietly(self._consumer, self._producer)
        self._consumer = self._producer = None

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
                await producer.send_and_wait(self._settings.rejections_topic, value, key=key, headers=headers)
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
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading replies failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    self._resolve(record.value)

    def _resolve(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            outcome = decode_outcome(value)
        except ValueError:
            log.warning("undecodable outcome skipped")
            return
        if outcome.reply_to != self.instance_id:
            return
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


async def _stop_quietly(consumer: AIOKafkaConsumer | None, producer: AIOKafkaProducer | None) -> None:
    for client in (consumer, producer):
        if client is not None:
            with contextlib.suppress(Exception):
                await client.stop()
