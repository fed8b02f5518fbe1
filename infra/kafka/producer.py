"""A thin aiokafka producer for the events and rejections topics.

Idempotent (``enable_idempotence``, ``acks="all"``): a retried batch is written once and in order.
Consumers are idempotent on (stream_id, stream_version) or ids anyway, since a producer that dies
and is restarted (a new producer id) may append an event again. No transactions: Parley is
at-least-once throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from domain.envelope import EventEnvelope, Rejection
from infra.kafka.codec import Headers, encode_event, encode_rejection
from infra.kafka.offsets import LogUnavailable
from infra.settings import Settings


class EventProducer:
    """Appends EventEnvelopes and Rejections to their topics; each send returns (partition, offset)."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "parley-producer",
        linger_ms: int = 5,
        timeout_s: float = 10.0,
    ) -> None:
        self._settings = settings
        self._timeout = timeout_s
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_batch_size=1024 * 1024,
            request_timeout_ms=max(5000, int(timeout_s * 1000)),
        )
        self._started = False

    @property
    def events_topic(self) -> str:
        return self._settings.events_topic

    @property
    def rejections_topic(self) -> str:
        return self._settings.rejections_topic

    async def start(self) -> None:
        if not self._settings.kafka_bootstrap:
            raise LogUnavailable("no Kafka bootstrap servers configured")
        try:
            await asyncio.wait_for(self._producer.start(), self._timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.stop()
            raise LogUnavailable(f"Kafka unavailable at {self._settings.kafka_bootstrap}: {exc}") from exc
        self._started = True

    async def stop(self) -> None:
        self._started = False
        await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def send_event(self, event: EventEnvelope, topic: str | None = None) -> tuple[int, int]:
        """Append one event (key: its stream id) and wait for the broker's acknowledgement."""
        key, value, headers = encode_event(event)
        return await self._send(topic or self.events_topic, key, value, headers)

    async def send_rejection(self, rejection: Rejection, topic: str | None = None) -> tuple[int, int]:
        key, value, headers = encode_rejection(rejection)
        return await self._send(topic or self.rejections_topic, key, value, headers)

    async def send_events(self, events: Sequence[EventEnvelope], topic: str | None = None) -> list[tuple[int, int]]:
        """Append many events in order, pipelined (batched by the client), and wait for all of them."""
        target = topic or self.events_topic
        futures = []
        for event in events:
            key, value, headers = encode_event(event)
            futures.append(await self._producer.send(target, value=value, key=key, headers=headers))
        results = await asyncio.gather(*futures)
        return [(int(md.partition), int(md.offset)) for md in results]

    async def _send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> tuple[int, int]:
        md = await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)
        return int(md.partition), int(md.offset)
