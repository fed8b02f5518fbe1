"""Rebuilding a projection from the log while the platform keeps serving the old copy.

1. take the projection's rebuild lock; drop leftovers of interrupted runs (every generation
   but the live one), create ``rm_<name>_g<N+1>``;
2. fold the log from offset 0 up to the end offsets snapshotted at start, in large batches
   (one ``find`` and one bulk write per batch; reading the next batch overlaps the write),
   through the live agent's runner (``projections.runner``): the records it parks live are
   left out here and listed in the report;
3. catch up to the current end offsets, create the indexes, swap the registry entry (one
   write: readers move over atomically);
4. wait a little longer than the registry's cache time (the live agent may still have
   written a few events to the old collection) and catch up once more from the rebuild's
   positions; save the positions, drop the old collection.

Until step 3 the registry still names the old collection, so an interrupted run (Ctrl-C,
kill) leaves the live projection untouched, and the next run starts clean.
The audit trail rebuilds the same way into a new trail collection; its chains are
deterministic, so the new trail is identical to the one built live. The search projection
rebuilds into generation N+1 of its three Elasticsearch indexes and moves their aliases in one
request at step 3 (``infra/search_indexes.py``); its registry entry records the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pymongo import DeleteOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from domain.envelope import EventEnvelope, Rejection
from domain.upcasting import upcast
from infra.gc_tuning import fewer_collections
from infra.kafka.codec import decode_event
from infra.kafka.log_reader import LogEntry, LogReader, Record, decode_event_record, decode_rejection_record
from infra.mongo.audit_trail import AUDIT, AuditTrail, ensure_trail_indexes
from infra.mongo.client import MongoDoc, mongo_client, mongo_db, only_duplicates
from infra.mongo.documents import DocumentStore, Positions, ProjectionRegistry, collection_for, refusals
from infra.mongo.key_store import key_ring
from infra.settings import Settings
from projections.base import DocumentProjection, Folded, fold
from projections.runner import POISON, Projector
from projections.runner import Record as RawRecord
from projections.search import SEARCH, SearchProjection

log = logging.getLogger("parley.rebuild")

T = TypeVar("T")

LOCKS = "projection_rebuilds"
LOCK_LEASE_S = 30.0
LOCK_HEARTBEAT_S = 5.0
# A little more than ProjectionRegistry's cache time: after it, no reader still uses the old collection.
SWAP_SETTLE_S = 1.5


class UnknownProjection(ValueError):
    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown projection {name!r} (valid: {', '.join(valid)})")
        self.name = name
        self.valid = valid


class RebuildBusy(RuntimeError):
    """Another rebuild of the same projection holds its lock."""


@dataclass(frozen=True)
class RebuildProgress:
    name: str
    phase: str  # "rebuild", "catch-up", "final catch-up"
    done: int  # log records read so far (all phases)
    total: int  # records in the snapshot taken at start
    elapsed_s: float


@dataclass
class RebuildReport:
    name: str
    collection: str
    generation: int
    previous: str | None
    records: int = 0  # log records read
    applied: int = 0  # events that changed the projection (records appended, for audit)
    seconds: float = 0.0  # the whole run, the swap's settle wait included
    setup_seconds: float = 0.0  # before the first record is read: lock, collections, connecting to the log
    fold_seconds: float = 0.0  # reading and applying records, every phase (not the swap's settle wait)
    bulk_seconds: float = 0.0  # folding the snapshot (the first phase): the throughput figure
    bulk_records: int = 0
    positions: dict[str, dict[int, int]] = field(default_factory=dict)
    parked: list[Parked] = field(default_factory=list)  # records left out, as the live agent parks them

    @property
    def rate(self) -> float:
        """Records per second of folding: a fixed set-up cost would make small rebuilds look slow."""
        return self.records / self.fold_seconds if self.fold_seconds > 0 else 0.0

    def summary(self) -> str:
        """What `parley projections rebuild` prints when done."""
        line = (
            f"rebuilt {self.name} into {self.collection} (generation {self.generation}): "
            f"{self.records:,} log records folded in {self.fold_seconds:.1f} s ({self.rate:,.0f} records/s); "
            f"set-up {self.setup_seconds:.1f} s, whole run {self.seconds:.1f} s"
        )
        if self.previous and self.previous != self.collection:
            line += f"; dropped {self.previous}"
        if self.parked:
            line += f"; left out {len(self.parked)} record(s) the live agent parks"
        return line


Progress = Callable[[RebuildProgress], None]


@dataclass(frozen=True)
class Parked:
    """A record the projection runner parked: where it is in the log, and why."""

    topic: str
    partition: int
    offset: int
    reason: str


class ParkedRecords:
    """A rebuild's dead letters: the live agent, running the same runner under the same policy,
    has parked these records already; the rebuild leaves them out of the new copy and lists them."""

    def __init__(self) -> None:
        self.parked: list[Parked] = []

    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None:
        log.warning(
            "rebuild leaves out %s:%d@%d (%s), as the live agent parks it", source_topic, partition, offset, reason
        )
        self.parked.append(Parked(source_topic, partition, offset, reason))


def document_projections() -> dict[str, DocumentProjection]:
    from projections.catalog import DOCUMENT_PROJECTIONS

    return dict(DOCUMENT_PROJECTIONS)


def projection_names() -> list[str]:
    """Every projection a rebuild accepts: the document projections, ``audit`` and ``search``."""
    return [*sorted(document_projections()), AUDIT, SEARCH]


async def rebuild_projection(
    settings: Settings,
    name: str,
    progress: Progress | None = None,
    batch_size: int = 2000,
    *,
    projections: Mapping[str, DocumentProjection] | None = None,
    settle_s: float = SWAP_SETTLE_S,
) -> RebuildReport:
    """Rebuild projection ``name`` from the log and swap it in; see the module docstring.

    ``projections`` overrides the catalogue (tests). Raises UnknownProjection, RebuildBusy,
    LogUnavailable (Kafka) and PyMongo's errors (MongoDB).
    """
    catalogue = dict(projections) if projections is not None else document_projections()
    if name not in (AUDIT, SEARCH) and name not in catalogue:
        raise UnknownProjection(name, [*sorted(catalogue), AUDIT, SEARCH])
    client = mongo_client(settings)
    try:
        db = mongo_db(client, settings)
        async with _rebuild_lock(db, name):
            run = _Rebuild(settings, db, name, progress, batch_size, settle_s)
            with fewer_collections():
                if name == AUDIT:
                    return await run.audit()
                if name == SEARCH:
                    return await run.search()
                return await run.documents(catalogue[name])
    finally:
        await client.close()


async def rebuild_missing(
    settings: Settings,
    progress: Progress | None = None,
    *,
    projections: Mapping[str, DocumentProjection] | None = None,
    search: bool | None = None,
) -> list[str]:
    """Rebuild every projection whose live collection is missing or empty while the log holds
    events it would apply (a store that was dropped); returns the names rebuilt.

    An empty collection counts as missing because provisioning recreates the live collections
    (with their indexes) before this runs. The search indexes are missing when the generation
    the registry names does not exist or is not the one the aliases point at (a server that
    keeps nothing on disk restarted, and provisioning made an empty generation 1), or when they
    are empty. ``search`` (default: whether an Elasticsearch URL is set) includes them.
    """
    catalogue = dict(projections) if projections is not None else document_projections()
    if search if search is not None else bool(settings.elasticsearch_url):
        catalogue[SEARCH] = SearchProjection()
    client = mongo_client(settings)
    try:
        db = mongo_db(client, settings)
        registry = ProjectionRegistry(db)
        empty: list[str] = []
        for name in [*sorted(catalogue), AUDIT]:
            entry = await registry.entry(name)
            if name == SEARCH:
                if await _search_missing(settings, int(entry["generation"]) if entry else 1):
                    empty.append(name)
                continue
            coll = str(entry["collection"]) if entry else collection_for(name, 1)
            if await db[coll].find_one({}, {"_id": 1}) is None:
                empty.append(name)
    finally:
        await client.close()
    rebuilt: list[str] = []
    for name in empty:
        if not await _log_has_work(settings, name, catalogue.get(name)):
            if name == SEARCH:  # nothing to index, but the generation the registry names must exist
                await _reset_search(settings)
            continue
        log.info("projection %s has no documents but the log has events for it: rebuilding", name)
        try:
            report = await rebuild_projection(settings, name, progress or _log_progress(), projections=catalogue)
        except RebuildBusy as exc:  # another process is rebuilding it already
            log.info("not rebuilding %s here: %s", name, exc)
            continue
        log.info("rebuilt %s into %s: %d records in %.1fs", name, report.collection, report.records, report.seconds)
        rebuilt.append(name)
    return rebuilt


async def _search_missing(settings: Settings, generation: int) -> bool:
    from infra.search_client import search_client
    from infra.search_indexes import alias_names, generation_exists, live_generation

    client = search_client(settings)
    try:
        if await live_generation(client, settings) != generation:
            return True
        if not await generation_exists(client, settings, generation):
            return True
        counted = await client.count(index=",".join(alias_names(settings).values()))
        return int(counted.body["count"]) == 0
    finally:
        await client.close()


async def _reset_search(settings: Settings) -> None:
    """Point the registry at the generation the aliases name (an empty log: nothing to rebuild)."""
    from infra.search_client import search_client
    from infra.search_indexes import generation_label, live_generation

    client = search_client(settings)
    mongo = mongo_client(settings)
    try:
        generation = await live_generation(client, settings)
        if generation is not None:
            registry = ProjectionRegistry(mongo_db(mongo, settings))
            entry = await registry.entry(SEARCH)
            if entry is None or int(entry["generation"]) != generation:
                await registry.swap(SEARCH, generation_label(settings, generation), generation)
    finally:
        await client.close()
        await mongo.close()


async def _log_has_work(settings: Settings, name: str, projection: DocumentProjection | None) -> bool:
    if projection is None:  # the audit trail records everything on either topic
        for topic in (settings.events_topic, *settings.rejection_topics):
            async with LogReader(settings, topic) as reader:
                if reader.total > 0:
                    return True
        return False
    async with LogReader(settings, settings.events_topic) as reader:
        async for batch in reader.batches(decode_upcast_event):
            if any(_touches(projection, entry.value) for entry in batch):
                return True
    return False


def _touches(projection: DocumentProjection, event: EventEnvelope) -> bool:
    try:
        return bool(projection.doc_ids(event))
    except POISON:
        return False


def _log_progress() -> Progress:
    last = [0.0]

    def report(p: RebuildProgress) -> None:
        now = time.monotonic()
        if now - last[0] >= 5.0:
            last[0] = now
            log.info("rebuilding %s: %s %d/%d records", p.name, p.phase, p.done, p.total)

    return report


def raw_record(record: Record) -> RawRecord:
    """A log record as the projection runner takes it (the live agent gets the same from Faust)."""
    return RawRecord(record.partition, record.offset, record.value or b"")


def erased_by(items: Iterable[tuple[Any, EventEnvelope]]) -> list[str]:
    """The users a batch's ``UserErased`` events erase."""
    return [str(event.payload["user_id"]) for _, event in items if event.type == "UserErased"]


def decode_upcast_event(record: Record) -> EventEnvelope | None:
    """As the projection runner reads events: decoded and upcast; a record it would park is skipped."""
    event = decode_event_record(record)
    if event is None:
        return None
    try:
        return upcast(event)
    except ValueError:
        log.warning("skipping event %s: cannot upcast it", event.event_id)
        return None


class _Rebuild:
    def __init__(
        self,
        settings: Settings,
        db: AsyncDatabase[MongoDoc],
        name: str,
        progress: Progress | None,
        batch_size: int,
        settle_s: float,
    ) -> None:
        self.settings = settings
        self.db = db
        self.name = name
        self.progress = progress
        self.batch_size = batch_size
        self.settle_s = settle_s
        self.registry = ProjectionRegistry(db)
        self.started = time.monotonic()
        self.done = 0
        self.total = 0
        self.applied = 0
        self.bulk_seconds = 0.0
        self.bulk_records = 0
        self.setup_seconds: float | None = None
        self.fold_seconds = 0.0
        self.dead_letters = ParkedRecords()
        self.keys = key_ring(settings, db.client)

    def _bulk_done(self, since: float) -> None:
        self.bulk_seconds += time.monotonic() - since
        self.bulk_records = self.done

    async def _prepare(self) -> tuple[str, int]:
        """Drop leftovers of interrupted runs and create the next generation's collection."""
        entry = await self.registry.entry(self.name)
        live = str(entry["collection"]) if entry else None
        generation = (int(entry["generation"]) if entry else 1) + 1
        pattern = re.compile(rf"^rm_{re.escape(self.name)}_g\d+$")
        for coll in await self.db.list_collection_names():
            if not pattern.match(coll) or coll == live:
                continue
            if entry is None and coll == collection_for(self.name, 1):
                continue  # the implicit first generation, which the live agent may be writing
            log.info("dropping %s (left over by an interrupted rebuild)", coll)
            await self.db.drop_collection(coll)
        target = collection_for(self.name, generation)
        await self.db.create_collection(target)
        return target, generation

    def _tick(self, phase: str) -> None:
        if self.progress is not None:
            self.progress(RebuildProgress(self.name, phase, self.done, self.total, time.monotonic() - self.started))

    async def _fold(
        self,
        reader: LogReader,
        decode: Callable[[Record], T | None],
        apply: Callable[[list[LogEntry[T]]], Coroutine[Any, Any, int]],
        phase: str,
        start: Mapping[int, int] | None,
        end: Mapping[int, int] | None,
    ) -> None:
        """``_fold_batches``, timed: set-up ends when the first fold starts."""
        began = time.monotonic()
        if self.setup_seconds is None:
            self.setup_seconds = began - self.started
        try:
            await self._fold_batches(reader, decode, apply, phase, start, end)
        finally:
            self.fold_seconds += time.monotonic() - began

    async def _fold_batches(
        self,
        reader: LogReader,
        decode: Callable[[Record], T | None],
        apply: Callable[[list[LogEntry[T]]], Coroutine[Any, Any, int]],
        phase: str,
        start: Mapping[int, int] | None,
        end: Mapping[int, int] | None,
    ) -> None:
        """Apply the log from ``start`` to ``end`` in batches of one partition each.

        Streams (and so documents and audit chains) never span partitions: each partition
        gets a writer task applying its batches in order, and the writers run concurrently
        with each other and with reading and decoding, so one batch's fold and encoding
        overlaps another's write. Memory stays bounded: per partition, one batch filling,
        at most two queued and one being written.
        """
        buffers: dict[int, list[LogEntry[T]]] = {}
        queues: dict[int, asyncio.Queue[list[LogEntry[T]] | None]] = {}
        writers: dict[int, asyncio.Task[None]] = {}

        async def writer(queue: asyncio.Queue[list[LogEntry[T]] | None]) -> None:
            while (batch := await queue.get()) is not None:
                self.applied += await apply(batch)

        async def hand_over(partition: int, batch: list[LogEntry[T]] | None) -> None:
            if partition not in queues:
                queues[partition] = asyncio.Queue(maxsize=2)
                writers[partition] = asyncio.create_task(writer(queues[partition]))
            put = asyncio.ensure_future(queues[partition].put(batch))
            task = writers[partition]
            try:
                await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not put.done():  # the writer stopped (a failed write), or we were cancelled
                    put.cancel()
            if put.cancelled():
                task.result()
                raise RuntimeError(f"the writer of partition {partition} stopped")

        def check_writers() -> None:
            for task in writers.values():
                if task.done():
                    task.result()  # raises the writer's error

        try:
            async for batch in _raw_and_decoded(reader, decode, start, end, self):
                for entry in batch:
                    buffers.setdefault(entry.partition, []).append(entry)
                for partition in [p for p, b in buffers.items() if len(b) >= self.batch_size]:
                    await hand_over(partition, buffers.pop(partition))
                check_writers()
                self._tick(phase)
            for partition in list(buffers):
                await hand_over(partition, buffers.pop(partition))
            for partition in list(queues):
                await hand_over(partition, None)
            await asyncio.gather(*writers.values())
            self._tick(phase)
        finally:
            for task in writers.values():
                task.cancel()
            for task in writers.values():
                with contextlib.suppress(BaseException):
                    await task

    async def documents(self, projection: DocumentProjection) -> RebuildReport:
        topic = self.settings.events_topic
        target, generation = await self._prepare()
        store = DocumentStore(self.db[target], projection)
        loader = BulkLoadStore(self.db[target], projection)
        # The live agent's runner, but a store that fails stops the rebuild (the live copy is untouched).
        runner = Projector(topic, decode_event, self.dead_letters, opener=self.keys)

        def into(target_store: DocumentStore) -> Callable[[list[LogEntry[RawRecord]]], Coroutine[Any, Any, int]]:
            async def apply(batch: list[LogEntry[RawRecord]]) -> int:
                decoded = await runner.decode_batch([entry.value for entry in batch])
                applied = await runner.project(self.name, target_store, decoded.current)
                # What this rebuild folded before the user's key was destroyed (docs/THREAT-MODEL.md).
                for user_id in erased_by(decoded.current):
                    await store.redact(user_id)
                return applied

            return apply

        load, apply = into(loader), into(store)

        async with LogReader(self.settings, topic, batch_size=self.batch_size) as reader:
            self.total = reader.total
            self._tick("rebuild")
            bulk = time.monotonic()
            await self._fold(reader, raw_record, load, "rebuild", None, None)
            self._bulk_done(bulk)
            positions = dict(reader.positions)
            await reader.refresh_end_offsets()
            await self._fold(reader, raw_record, load, "catch-up", positions, None)
            positions.update(reader.positions)
            await store.ensure_indexes()
            previous = await self.registry.swap(self.name, target, generation)
            await asyncio.sleep(self.settle_s)
            await reader.refresh_end_offsets()
            await self._fold(reader, raw_record, apply, "final catch-up", positions, None)
            positions.update(reader.positions)
        await Positions(self.db).save(self.name, topic, positions)
        if previous and previous != target:
            await self.db.drop_collection(previous)
        return self._report(target, generation, previous, {topic: positions})

    async def search(self) -> RebuildReport:
        """Generation N+1 of the three search indexes, filled from the log; the aliases move when complete."""
        from infra.search_client import search_client
        from infra.search_indexes import (
            alias_names,
            create_generation,
            drop_generations,
            generation_label,
            live_generation,
            move_aliases,
        )
        from infra.search_store import SearchStore

        topic = self.settings.events_topic
        client = search_client(self.settings, timeout_s=60.0)
        try:
            entry = await self.registry.entry(SEARCH)
            live = await live_generation(client, self.settings)
            generation = max(int(entry["generation"]) if entry else 1, live or 1) + 1
            # Leftovers of interrupted runs: every generation but the live one.
            for index in await drop_generations(client, self.settings, keep=live if live is not None else -1):
                log.info("dropped search index %s (not live)", index)
            targets = await create_generation(client, self.settings, generation)
            runner = Projector(topic, decode_event, self.dead_letters, opener=self.keys)

            def into(store: SearchStore) -> Callable[[list[LogEntry[RawRecord]]], Coroutine[Any, Any, int]]:
                async def apply(batch: list[LogEntry[RawRecord]]) -> int:
                    decoded = await runner.decode_batch([entry.value for entry in batch])
                    applied = await runner.project(self.name, store, decoded.current)
                    for user_id in erased_by(decoded.current):
                        await store.redact(user_id)
                    return applied

                return apply

            # Nobody searches the new generation before the swap: refresh once, not per batch.
            loading = SearchStore(client, targets, refresh=False)
            live_store = SearchStore(client, alias_names(self.settings), aliases=True)
            async with LogReader(self.settings, topic, batch_size=self.batch_size) as reader:
                self.total = reader.total
                self._tick("rebuild")
                bulk = time.monotonic()
                await self._fold(reader, raw_record, into(loading), "rebuild", None, None)
                self._bulk_done(bulk)
                positions = dict(reader.positions)
                await reader.refresh_end_offsets()
                await self._fold(reader, raw_record, into(loading), "catch-up", positions, None)
                positions.update(reader.positions)
                await loading.refresh_now()
                await move_aliases(client, self.settings, generation)
                label = generation_label(self.settings, generation)
                previous = await self.registry.swap(SEARCH, label, generation)
                await asyncio.sleep(self.settle_s)
                await reader.refresh_end_offsets()
                await self._fold(reader, raw_record, into(live_store), "final catch-up", positions, None)
                positions.update(reader.positions)
            await Positions(self.db).save(self.name, topic, positions)
            await drop_generations(client, self.settings, keep=generation)
        finally:
            await client.close()
        return self._report(label, generation, previous, {topic: positions})

    async def audit(self) -> RebuildReport:
        target, generation = await self._prepare()
        await ensure_trail_indexes(self.db[target])  # the chain head lookups need (chain, seq)
        trail = AuditTrail(self.db, collection=target, registry=self.registry)
        topics: list[tuple[str, Callable[[Record], EventEnvelope | Rejection | None]]] = [
            (self.settings.events_topic, decode_event_record),
            *((topic, decode_rejection_record) for topic in self.settings.rejection_topics),
        ]
        readers: dict[str, LogReader] = {}
        positions: dict[str, dict[int, int]] = {}
        async with contextlib.AsyncExitStack() as stack:
            for topic, _ in topics:
                readers[topic] = await stack.enter_async_context(
                    LogReader(self.settings, topic, batch_size=self.batch_size)
                )
            self.total = sum(r.total for r in readers.values())
            self._tick("rebuild")

            def appender(topic: str) -> Callable[[list[LogEntry[Any]]], Coroutine[Any, Any, int]]:
                async def append(batch: list[LogEntry[Any]]) -> int:
                    return await trail.append(topic, [(e.partition, e.offset, e.value) for e in batch])

                return append

            for phase in ("rebuild", "catch-up"):
                bulk = time.monotonic()
                for topic, decode in topics:
                    reader = readers[topic]
                    if phase != "rebuild":
                        await reader.refresh_end_offsets()
                    await self._fold(reader, decode, appender(topic), phase, positions.get(topic), None)
                    positions[topic] = {**positions.get(topic, {}), **reader.positions}
                if phase == "rebuild":
                    self._bulk_done(bulk)
            previous = await self.registry.swap(self.name, target, generation)
            await asyncio.sleep(self.settle_s)
            for topic, decode in topics:
                reader = readers[topic]
                await reader.refresh_end_offsets()
                await self._fold(reader, decode, appender(topic), "final catch-up", positions[topic], None)
                positions[topic] = {**positions[topic], **reader.positions}
        for topic, offsets in positions.items():
            await Positions(self.db).save(self.name, topic, offsets)
        if previous and previous != target:
            await self.db.drop_collection(previous)
        return self._report(target, generation, previous, positions)

    def _report(
        self, target: str, generation: int, previous: str | None, positions: dict[str, dict[int, int]]
    ) -> RebuildReport:
        return RebuildReport(
            name=self.name,
            collection=target,
            generation=generation,
            previous=previous,
            records=self.done,
            applied=self.applied,
            seconds=time.monotonic() - self.started,
            setup_seconds=self.setup_seconds or 0.0,
            fold_seconds=self.fold_seconds,
            bulk_seconds=self.bulk_seconds,
            bulk_records=self.bulk_records,
            positions=positions,
            parked=list(self.dead_letters.parked),
        )


async def _raw_and_decoded(
    reader: LogReader,
    decode: Callable[[Record], T | None],
    start: Mapping[int, int] | None,
    end: Mapping[int, int] | None,
    run: _Rebuild,
) -> AsyncIterator[list[LogEntry[T]]]:
    """Decoded batches, counting every record read (decoded or not) for the progress bar."""
    async for records in reader.raw_batches(start, end):
        run.done += len(records)
        out: list[LogEntry[T]] = []
        for record in records:
            value = decode(record)
            if value is not None:
                out.append(LogEntry(record.partition, record.offset, value))
        yield out


class BulkLoadStore(DocumentStore):
    """DocumentStore for filling a collection nobody else writes yet (before the swap):
    the same fold, but documents that do not exist yet are inserted rather than upserted,
    which costs MongoDB a third of an upsert. Should a document appear meanwhile anyway,
    the batch is applied again the ordinary way (idempotent by stream version)."""

    async def apply(self, events: Sequence[EventEnvelope], on_event: Any = None) -> Folded:
        # A document first touched here by the event that creates it is not read (``to_look_up``):
        # should a repeated copy of that event find it, the insert's duplicate key catches it.
        current = await self.current(events)
        folded = fold(self.projection, current, events)
        inserts: list[MongoDoc] = []
        others: list[ReplaceOne[MongoDoc] | DeleteOne] = []
        for doc_id in folded.changed:
            doc = folded.docs[doc_id]
            if doc is None:
                others.append(DeleteOne({"_id": doc_id}))
            elif current[doc_id] is None:
                inserts.append(doc)
            else:
                others.append(ReplaceOne({"_id": doc_id}, doc, upsert=True))
        with refusals():  # a document MongoDB refuses is poison, as in DocumentStore
            try:
                if inserts:
                    await self.collection.insert_many(inserts, ordered=False)
            except BulkWriteError as exc:
                if not only_duplicates(exc):
                    raise
                return await DocumentStore.apply(self, events)
            if others:
                await self.collection.bulk_write(others, ordered=False)
        return folded


# --- the rebuild lock -------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.asynccontextmanager
async def _rebuild_lock(db: AsyncDatabase[MongoDoc], name: str) -> AsyncIterator[None]:
    """One rebuild per projection at a time: a lease renewed while the rebuild runs. A lock
    left by a killed run is taken over once its lease expires, or at once when its process
    (on this host) is gone."""
    locks = db[LOCKS]
    host, pid = socket.gethostname(), os.getpid()
    token = f"{host}:{pid}:{uuid.uuid4()}"
    mine = {"_id": name, "owner": token, "host": host, "pid": pid}
    now = datetime.now(UTC)
    try:
        await locks.insert_one({**mine, "heartbeat": now})
    except DuplicateKeyError:
        held = await locks.find_one({"_id": name})
        if held is not None:
            beat = held.get("heartbeat")
            expired = isinstance(beat, datetime) and _aware(beat) < now - timedelta(seconds=LOCK_LEASE_S)
            # Same host: its process is gone, or it is this very pid (a restarted container's pid 1).
            held_pid = int(held.get("pid", 0))
            dead = held.get("host") == host and (held_pid == pid or not _pid_alive(held_pid))
            if not (expired or dead):
                raise RebuildBusy(
                    f"a rebuild of {name} is already running (host {held.get('host')}, pid {held.get('pid')})"
                ) from None
            taken = await locks.replace_one({"_id": name, "owner": held.get("owner")}, {**mine, "heartbeat": now})
            if taken.matched_count != 1:
                raise RebuildBusy(f"a rebuild of {name} has just started elsewhere") from None
        else:
            await locks.insert_one({**mine, "heartbeat": now})

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(LOCK_HEARTBEAT_S)
            with contextlib.suppress(Exception):
                await locks.update_one({"_id": name, "owner": token}, {"$set": {"heartbeat": datetime.now(UTC)}})

    beat_task = asyncio.create_task(heartbeat())
    try:
        yield
    finally:
        beat_task.cancel()
        with contextlib.suppress(BaseException):
            await beat_task
        with contextlib.suppress(Exception):
            await asyncio.shield(locks.delete_one({"_id": name, "owner": token}))


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


# --- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    position: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.position)


@dataclass(frozen=True)
class SourceStatus:
    """One topic a projection reads: its partitions summed."""

    topic: str
    partitions: list[PartitionStatus]

    @property
    def position(self) -> int:
        return sum(p.position for p in self.partitions)

    @property
    def end(self) -> int:
        return sum(p.end for p in self.partitions)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    collection: str
    generation: int
    documents: int
    partitions: list[PartitionStatus]
    topics: tuple[str, ...] = ()  # every topic the projection reads, in order (its sources)

    @property
    def sources(self) -> list[SourceStatus]:
        """Position and lag per topic read (audit: the events and both refusal topics)."""
        topics = list(self.topics) or list(dict.fromkeys(p.topic for p in self.partitions))
        return [SourceStatus(topic, [p for p in self.partitions if p.topic == topic]) for topic in topics]

    @property
    def position(self) -> int:
        """The sum over partitions of the next offset to apply."""
        return sum(p.position for p in self.partitions)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "collection": self.collection,
            "generation": self.generation,
            "documents": self.documents,
            "position": self.position,
            "lag": self.lag,
            "sources": [
                {"topic": src.topic, "position": src.position, "end": src.end, "lag": src.lag} for src in self.sources
            ],
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "position": p.position,
                    "end": p.end,
                    "lag": p.lag,
                }
                for p in self.partitions
            ],
        }


async def projection_status(
    settings: Settings, *, projections: Mapping[str, DocumentProjection] | None = None, search: bool | None = None
) -> list[ProjectionStatus]:
    """Each projection's live collection, position and lag behind the log's end offsets."""
    from infra.kafka.offsets import log_end_offsets

    catalogue = dict(projections) if projections is not None else document_projections()
    events, rejections = settings.events_topic, list(settings.rejection_topics)
    ends = await log_end_offsets(settings, [events, *rejections])
    client = mongo_client(settings)
    try:
        db = mongo_db(client, settings)
        registry = ProjectionRegistry(db)
        saved = Positions(db)
        out: list[ProjectionStatus] = []
        with_search = search if search is not None else bool(settings.elasticsearch_url)
        for name in [*sorted(catalogue), AUDIT, *([SEARCH] if with_search else [])]:
            entry = await registry.entry(name)
            coll = str(entry["collection"]) if entry else collection_for(name, 1)
            generation = int(entry["generation"]) if entry else 1
            if name == SEARCH:
                coll, documents = await _search_documents(settings, generation)
            topics = [events] if name != AUDIT else [events, *rejections]
            parts: list[PartitionStatus] = []
            for topic in topics:
                positions = await saved.load(name, topic)
                if name == AUDIT:
                    trail = AuditTrail(db, collection=coll)
                    reached = await trail.positions(topic, sorted(ends.get(topic, {})))
                    positions = {p: max(positions.get(p, 0), reached.get(p, 0)) for p in ends.get(topic, {})}
                for p, end in sorted(ends.get(topic, {}).items()):
                    parts.append(PartitionStatus(topic, p, positions.get(p, 0), end))
            if name != SEARCH:
                documents = await db[coll].estimated_document_count()
            out.append(ProjectionStatus(name, coll, generation, documents, parts, tuple(topics)))
        return out
    finally:
        await client.close()


async def _search_documents(settings: Settings, generation: int) -> tuple[str, int]:
    """The search generation's label and its documents (all three indexes; -1: the indexes are unreachable)."""
    from infra.search_client import search_client
    from infra.search_indexes import generation_label, index_names

    client = search_client(settings)
    try:
        counted = await client.count(index=",".join(index_names(settings, generation).values()))
        return generation_label(settings, generation), int(counted.body["count"])
    except Exception as exc:  # status still shows the others; -1 says this one could not be counted
        log.warning("search indexes not counted: %r", exc)
        return generation_label(settings, generation), -1
    finally:
        await client.close()
