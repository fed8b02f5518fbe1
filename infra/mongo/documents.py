"""MongoDB adapter for document projections: generations, positions, batched idempotent writes.

Each projection's documents live in a versioned collection (``rm_<name>_g<N>``); the
``projection_registry`` collection names the live one. A rebuild fills generation N+1 and
swaps the registry entry in one write, so readers move over atomically.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from bson.errors import InvalidDocument
from pymongo import ASCENDING, DeleteOne, IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from domain.envelope import EventEnvelope
from infra.mongo.client import DUPLICATE_KEY, MongoDoc
from projections.base import VERSION_FIELD, DocumentProjection, Folded, OnEvent, first_touches, fold, to_look_up
from projections.runner import StoreRefused

REGISTRY = "projection_registry"
POSITIONS = "projection_positions"


def collection_for(name: str, generation: int) -> str:
    return f"rm_{name}_g{generation}"


class ProjectionRegistry:
    """Which collection generation is live for each projection (cached briefly for readers)."""

    def __init__(self, db: AsyncDatabase[MongoDoc], cache_seconds: float = 1.0) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, str]] = {}
        self._ttl = cache_seconds

    async def entry(self, name: str) -> MongoDoc | None:
        return await self._db[REGISTRY].find_one({"_id": name})

    async def live_collection(self, name: str) -> str:
        hit = self._cache.get(name)
        now = time.monotonic()
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        entry = await self.entry(name)
        if entry is None:
            # First use: generation 1. upsert with $setOnInsert keeps a concurrent writer's choice.
            await self._db[REGISTRY].update_one(
                {"_id": name},
                {"$setOnInsert": {"collection": collection_for(name, 1), "generation": 1, "since": _now()}},
                upsert=True,
            )
            entry = await self.entry(name)
            assert entry is not None
        coll = str(entry["collection"])
        self._cache[name] = (now, coll)
        return coll

    async def swap(self, name: str, collection: str, generation: int) -> str | None:
        """Point the projection at a new collection; returns the previous collection name."""
        before = await self._db[REGISTRY].find_one_and_update(
            {"_id": name},
            {"$set": {"collection": collection, "generation": generation, "since": _now()}},
            upsert=True,
        )
        self._cache.pop(name, None)
        return str(before["collection"]) if before else None


class Positions:
    """Per projection and partition, the next log offset to apply (for status, lag and rebuild)."""

    def __init__(self, db: AsyncDatabase[MongoDoc]) -> None:
        self._coll = db[POSITIONS]

    async def save(self, name: str, topic: str, offsets: dict[int, int]) -> None:
        await self.save_all((name,), topic, offsets)

    async def save_all(self, names: Sequence[str], topic: str, offsets: dict[int, int]) -> None:
        """The same offsets for several projections, in one round trip."""
        if not offsets or not names:
            return
        now = _now()
        # Never backwards: a worker that was paused past its session (its partitions went to
        # another) may finish an old batch after the new owner has saved further positions.
        ops = [
            UpdateOne(
                {"_id": f"{name}:{topic}:{partition}"},
                {
                    "$max": {"offset": offset},
                    "$set": {"name": name, "topic": topic, "partition": partition, "updated_at": now},
                },
                upsert=True,
            )
            for name in names
            for partition, offset in offsets.items()
        ]
        await self._coll.bulk_write(ops, ordered=False)

    async def load(self, name: str, topic: str) -> dict[int, int]:
        out: dict[int, int] = {}
        async for doc in self._coll.find({"name": name, "topic": topic}):
            out[int(doc["partition"])] = int(doc["offset"])
        return out


class DocumentStore:
    """Applies batches of events to one collection through a pure projection."""

    def __init__(self, collection: AsyncCollection[MongoDoc], projection: DocumentProjection) -> None:
        self.collection = collection
        self.projection = projection

    async def ensure_indexes(self) -> None:
        models = [
            IndexModel(list(spec.keys), unique=spec.unique, **({"name": spec.name} if spec.name else {}))
            for spec in self.projection.indexes
        ]
        if models:
            await self.collection.create_indexes(models)

    async def current(
        self, events: Sequence[EventEnvelope], on_event: OnEvent | None = None
    ) -> dict[str, MongoDoc | None]:
        """Every document the events touch, as stored where the fold needs it (``to_look_up``), else None."""
        first = first_touches(self.projection, events)
        current: dict[str, MongoDoc | None] = dict.fromkeys(first)
        lookup = to_look_up(self.projection, first, on_event)
        if lookup:
            async for doc in self.collection.find({"_id": {"$in": lookup}}):
                current[str(doc["_id"])] = doc
        return current

    async def apply(self, events: Sequence[EventEnvelope], on_event: OnEvent | None = None) -> Folded:
        current = await self.current(events, on_event)
        folded = fold(self.projection, current, events, on_event)
        ops: list[ReplaceOne[MongoDoc] | DeleteOne] = []
        for doc_id in folded.changed:
            new = folded.docs[doc_id]
            if new is None:
                ops.append(DeleteOne({"_id": doc_id}))
            else:
                # Only over an older version: two writers of one document (a rebuild catching up
                # while the live agent moves to the new collection) can never step it back.
                older = {"$or": [{VERSION_FIELD: {"$lt": new[VERSION_FIELD]}}, {VERSION_FIELD: {"$exists": False}}]}
                ops.append(ReplaceOne({"_id": doc_id, **older}, new, upsert=True))
        if ops:
            with refusals():
                try:
                    await self.collection.bulk_write(ops, ordered=False)
                except BulkWriteError as exc:
                    # A duplicate key means the filter found a newer version: keep it. Anything else is real.
                    real = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
                    if real or exc.details.get("writeConcernErrors"):
                        raise
        return folded

    async def redact(self, user_id: str) -> int:
        """Redact every document holding ``user_id``'s personal data (crypto-shredding); how many changed.

        Each is replaced only if it is still the version read, so a newer write in between is never
        overwritten with an older state; that write's batch checks the key again (streams/runtime.py).
        Idempotent: a redacted document redacts to itself."""
        query = self.projection.holding(user_id)
        if query is None:
            return 0
        ops: list[ReplaceOne[MongoDoc]] = []
        async for doc in self.collection.find(query):
            new = self.projection.redact(dict(doc), user_id)
            if new != doc:
                ops.append(ReplaceOne({"_id": doc["_id"], VERSION_FIELD: doc.get(VERSION_FIELD)}, new))
        if ops:
            with refusals():
                await self.collection.bulk_write(ops, ordered=False)
        return len(ops)


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """MongoDB refusing a document (invalid, too large, a failed bulk write) as the projection
    runner's ``StoreRefused``: the event behind it is poison, not a store that is down."""
    try:
        yield
    except (InvalidDocument, BulkWriteError) as exc:
        raise StoreRefused(repr(exc)) from exc


async def ensure_registry_indexes(db: AsyncDatabase[MongoDoc]) -> None:
    await db[POSITIONS].create_index([("name", ASCENDING), ("topic", ASCENDING), ("partition", ASCENDING)])


def _now() -> datetime:
    return datetime.now(UTC)
