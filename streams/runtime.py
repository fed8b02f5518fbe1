"""What the worker's agents do with a decoded record, behind the Faust plumbing in `streams.app`.

Failure policy (never log-and-continue, which would move the offset past an event never
applied): a record that cannot be decoded is parked in the dead-letter topic at once; a
store that is down is retried with backoff for as long as it takes (the offset does not
move meanwhile); a projection that raises on a well-formed event is retried a few times
and then parked, loudly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from redis.exceptions import RedisError

from domain.envelope import EventEnvelope, Rejection
from domain.upcasting import upcast
from infra.kafka.codec import decode_event, decode_rejection
from infra.logging import correlation_id_var, message_type_var
from infra.mongo.documents import DocumentStore, Positions, ProjectionRegistry
from infra.settings import Settings
from projections.base import Doc, OnEvent
from projections.catalog import DOCUMENT_PROJECTIONS
from projections.pushes import Push, pushes_for

log = logging.getLogger("parley.worker")
T = TypeVar("T")

TRANSIENT = (ConnectionFailure, asyncio.TimeoutError, OSError, RedisError)
POISON_ATTEMPTS = 3


class Pusher(Protocol):
    async def push(self, push: Push) -> None: ...


class DeadLetters(Protocol):
    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None: ...


class Trail(Protocol):
    async def append(self, topic: str, records: Sequence[tuple[int, int, EventEnvelope | Rejection]]) -> int: ...


@dataclass(frozen=True)
class Record:
    """One consumed record: where it came from and its raw value."""

    partition: int
    offset: int
    value: bytes


@dataclass
class ProjectionRuntime:
    """Applies batches of events to every read model, the audit trail and pushes."""

    settings: Settings
    registry: ProjectionRegistry
    positions: Positions
    database: Any  # AsyncDatabase
    trail: Trail
    pusher: Pusher
    dead_letters: DeadLetters
    _stores: dict[str, DocumentStore] = field(default_factory=dict)

    async def _store(self, name: str) -> DocumentStore:
        collection = await self.registry.live_collection(name)
        store = self._stores.get(name)
        if store is None or store.collection.name != collection:
            store = DocumentStore(self.database[collection], DOCUMENT_PROJECTIONS[name])
            self._stores[name] = store
        return store

    async def events_batch(self, records: Sequence[Record]) -> None:
        topic = self.settings.events_topic
        stored: list[tuple[Record, EventEnvelope]] = []  # as in the log: what the audit trail hashes
        for record in records:
            try:
                stored.append((record, decode_event(record.value)))
            except Exception as exc:  # a record no reader can decode must not block the partition
                await self.dead_letters.park(topic, record.partition, record.offset, record.value, repr(exc))
        if not stored:
            return
        current = [(record, upcast(event)) for record, event in stored]  # today's shapes: what views read
        events = [event for _, event in current]
        pushes: list[Push] = []

        def collect(event: EventEnvelope, docs: Mapping[str, Doc | None]) -> None:
            pushes.extend(pushes_for(event, docs.get(event.stream_id.removeprefix("conversation:"))))

        # Independent stores are written concurrently; the last projection of the catalogue
        # (conversations) only after the others, so its version vouches for all of them.
        *first, last = DOCUMENT_PROJECTIONS
        await asyncio.gather(
            *(self._guarded(name, current, self._projection_action(name, events, collect)) for name in first),
            self._guarded(
                "audit", stored, lambda: self.trail.append(topic, [(r.partition, r.offset, e) for r, e in stored])
            ),
        )
        await self._guarded(last, current, self._projection_action(last, events, collect))
        offsets = _next_offsets(records)
        names = (*DOCUMENT_PROJECTIONS, "audit")
        await _retry_transient(lambda: self.positions.save_all(names, topic, offsets))
        for push in pushes:
            try:
                await self.pusher.push(push)
            except Exception:  # a push is a notification; the read model already has it
                log.warning("push %s failed", push.event, exc_info=True)

    def _projection_action(
        self, name: str, events: Sequence[EventEnvelope], collect: OnEvent
    ) -> Callable[[], Awaitable[Any]]:
        on_event = collect if name == "conversations" else None
        return lambda: self._apply(name, events, on_event)

    async def rejections_batch(self, records: Sequence[Record]) -> None:
        topic = self.settings.rejections_topic
        decoded: list[tuple[int, int, EventEnvelope | Rejection]] = []
        for record in records:
            try:
                decoded.append((record.partition, record.offset, decode_rejection(record.value)))
            except Exception as exc:
                await self.dead_letters.park(topic, record.partition, record.offset, record.value, repr(exc))
        if decoded:
            await _retry_transient(lambda: self.trail.append(topic, decoded))
            await _retry_transient(lambda: self.positions.save("audit", topic, _next_offsets(records)))

    async def _apply(self, name: str, events: Sequence[EventEnvelope], on_event: Any) -> None:
        store = await self._store(name)
        await store.apply(events, on_event)

    async def _guarded(
        self,
        name: str,
        decoded: Sequence[tuple[Record, EventEnvelope]],
        action: Callable[[], Awaitable[Any]],
    ) -> None:
        """Retry transient failures forever; park the batch's events after repeated other failures."""
        failures = 0
        while True:
            try:
                await _retry_transient(action)
                return
            except (OperationFailure, PyMongoError, ValueError, KeyError, TypeError) as exc:
                failures += 1
                if failures < POISON_ATTEMPTS:
                    await asyncio.sleep(0.2 * failures)
                    continue
                if len(decoded) > 1:
                    # Find the poison event: apply one at a time, parking only what fails.
                    for record, event in decoded:
                        await self._guarded(name, [(record, event)], self._single_action(name, event))
                    return
                record, event = decoded[0]
                log.error(
                    "projection %s cannot apply event %s (%s); parked in the dead-letter topic",
                    name,
                    event.event_id,
                    exc,
                    extra={"projection": name, "event_id": event.event_id, "correlation_id": event.correlation_id},
                )
                await self.dead_letters.park(
                    self.settings.events_topic, record.partition, record.offset, record.value, f"{name}: {exc!r}"
                )
                return

    def _single_action(self, name: str, event: EventEnvelope) -> Callable[[], Awaitable[Any]]:
        async def single() -> None:
            if name == "audit":
                raise ValueError("audit append failed")  # audit has no single-event path: park it
            await self._apply(name, [event], None)

        return single


async def _retry_transient(action: Callable[[], Awaitable[T]]) -> T:
    delay = 0.2
    while True:
        try:
            return await action()
        except TRANSIENT as exc:
            log.warning("store unavailable (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _next_offsets(records: Sequence[Record]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in records:
        out[r.partition] = max(out.get(r.partition, 0), r.offset + 1)
    return out


def bind_log_context(correlation_id: str | None, message_type: str | None) -> None:
    correlation_id_var.set(correlation_id)
    message_type_var.set(message_type)


def instance_name(settings: Settings) -> str:
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
