"""What the worker's agents do, reduced to the calls that matter here, to build read models
and the trail "live" (small batches, as records arrive) for comparison with a rebuild."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from domain.upcasting import upcast
from infra.kafka.log_reader import LogReader, decode_event_record, decode_rejection_record
from infra.mongo.audit_trail import AuditTrail
from infra.mongo.documents import DocumentStore, Positions, ProjectionRegistry
from infra.settings import Settings
from projections.base import DocumentProjection

MongoDoc = dict[str, Any]


class LiveAgent:
    """Follows the log from where it last stopped, applying each batch to the live collections."""

    def __init__(
        self,
        settings: Settings,
        db: AsyncDatabase[MongoDoc],
        projections: Mapping[str, DocumentProjection],
        *,
        audit: bool = True,
        batch_size: int = 5,
    ) -> None:
        self.settings = settings
        self.db = db
        self.projections = projections
        self.audit = audit
        self.batch_size = batch_size
        self.registry = ProjectionRegistry(db)
        self.positions: dict[str, dict[int, int]] = {}

    async def step(self) -> int:
        """Apply everything appended since the last step; returns the number of records."""
        n = 0
        trail = AuditTrail(self.db, registry=self.registry)
        saved = Positions(self.db)
        events = self.settings.events_topic
        async with LogReader(self.settings, events, batch_size=self.batch_size) as reader:
            async for batch in reader.batches(decode_event_record, start=self.positions.get(events)):
                upcast_events = [upcast(e.value) for e in batch]
                for name, projection in self.projections.items():
                    coll = await self.registry.live_collection(name)
                    await DocumentStore(self.db[coll], projection).apply(upcast_events)
                if self.audit:
                    await trail.append(events, [(e.partition, e.offset, e.value) for e in batch])
                offsets = {e.partition: e.offset + 1 for e in batch}
                for name in [*self.projections, *(["audit"] if self.audit else [])]:
                    await saved.save(name, events, offsets)
                n += len(batch)
            self.positions[events] = dict(reader.positions)
        if self.audit:
            rejections = self.settings.rejections_topic
            async with LogReader(self.settings, rejections, batch_size=self.batch_size) as reader:
                refusals = reader.batches(decode_rejection_record, start=self.positions.get(rejections))
                async for chunk in refusals:
                    await trail.append(rejections, [(e.partition, e.offset, e.value) for e in chunk])
                    await saved.save("audit", rejections, {e.partition: e.offset + 1 for e in chunk})
                    n += len(chunk)
                self.positions[rejections] = dict(reader.positions)
        return n


async def documents(db: AsyncDatabase[MongoDoc], collection: str) -> dict[str, MongoDoc]:
    return {str(doc["_id"]): doc async for doc in db[collection].find({})}
