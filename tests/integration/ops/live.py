"""The worker's projection runtime driven from the log in small batches, as records arrive, to
build read models and the trail "live" for comparison with a rebuild."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from infra.kafka.log_reader import LogReader
from infra.kafka.log_reader import Record as KafkaRecord
from infra.mongo.audit_trail import AuditTrail
from infra.mongo.client import MongoDoc
from infra.mongo.documents import Positions, ProjectionRegistry
from infra.settings import Settings
from projections.base import DocumentProjection
from projections.pushes import Push
from streams.runtime import DeadLetters, ProjectionRuntime, Record


class _NoTrail:
    async def append(self, topic: str, records: Any) -> int:
        return 0


class _NoPush:
    async def push_all(self, pushes: Sequence[Push]) -> None:
        return None


class _RaiseOnPark:
    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None:
        raise AssertionError(f"parked {source_topic}:{partition}@{offset}: {reason}")


class LiveAgent:
    """Follows the log from where it last stopped, feeding each batch to the worker's own
    ``ProjectionRuntime`` (the code the Faust agents run), with pushes switched off."""

    def __init__(
        self,
        settings: Settings,
        db: AsyncDatabase[MongoDoc],
        projections: Mapping[str, DocumentProjection],
        *,
        audit: bool = True,
        batch_size: int = 5,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.batch_size = batch_size
        self.registry = ProjectionRegistry(db)
        self.runtime = ProjectionRuntime(
            settings=settings,
            registry=self.registry,
            positions=Positions(db),
            database=db,
            trail=AuditTrail(db, registry=self.registry) if audit else _NoTrail(),
            pusher=_NoPush(),
            dead_letters=dead_letters or _RaiseOnPark(),
            projections=dict(projections),
        )
        self.positions: dict[str, dict[int, int]] = {}

    async def step(self) -> int:
        """Apply everything appended since the last step; returns the number of records."""
        n = 0
        events = self.settings.events_topic
        async with LogReader(self.settings, events, batch_size=self.batch_size) as reader:
            async for batch in reader.batches(_raw, start=self.positions.get(events)):
                await self.runtime.events_batch([Record(e.partition, e.offset, e.value) for e in batch])
                n += len(batch)
            self.positions[events] = dict(reader.positions)
        for rejections in self.settings.rejection_topics if self.audit else ():
            async with LogReader(self.settings, rejections, batch_size=self.batch_size) as reader:
                async for chunk in reader.batches(_raw, start=self.positions.get(rejections)):
                    records = [Record(e.partition, e.offset, e.value) for e in chunk]
                    await self.runtime.rejections_batch(records, rejections)
                    n += len(chunk)
                self.positions[rejections] = dict(reader.positions)
        return n


def _raw(record: KafkaRecord) -> bytes | None:
    return record.value


async def documents(db: AsyncDatabase[MongoDoc], collection: str) -> dict[str, MongoDoc]:
    return {str(doc["_id"]): doc async for doc in db[collection].find({})}
