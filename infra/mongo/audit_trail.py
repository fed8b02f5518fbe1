"""The compliance trail in MongoDB: append-only, hash-chained per log partition.

The trail's collection is versioned like a read model (registry name ``audit``, collection
``rm_audit_g<N>``) so that it can be rebuilt from the log and swapped in. The application
only ever inserts into it; ``verify_trail`` recomputes every chain and cross-checks each
record against the log record at its offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from domain.envelope import EventEnvelope, Rejection
from infra.kafka.log_reader import Decoder, LogEntry, LogReader, decode_event_record, decode_rejection_record
from infra.kafka.offsets import log_end_offsets
from infra.mongo.client import MongoDoc, only_duplicates
from infra.mongo.documents import Positions, ProjectionRegistry, collection_for
from infra.settings import Settings
from projections.audit import (
    AuditRecord,
    ChainBreak,
    ChainChecker,
    ChainHead,
    chain_name,
    check_against_log,
    extend_chain,
    item_id,
    log_digest,
    split_chain,
)

log = logging.getLogger(__name__)

AUDIT = "audit"
LogItem = EventEnvelope | Rejection
_APPEND_ATTEMPTS = 5


class AuditTrail:
    """Appends records to the trail; ``collection`` fixes the collection (a rebuild's target),
    otherwise the registry's live collection for ``audit`` is used at each append."""

    def __init__(
        self,
        db: AsyncDatabase[MongoDoc],
        *,
        collection: str | None = None,
        registry: ProjectionRegistry | None = None,
    ) -> None:
        self._db = db
        self._fixed = collection
        self._registry = registry or ProjectionRegistry(db)
        # Chain heads this writer appended, per collection: one writer owns a partition's chain
        # (the partition's consumer), so the next batch need not read them back. A head that is
        # stale (the chain moved under another writer: a rebuild catching up, or the partition
        # owned elsewhere meanwhile) makes the insert collide on (chain, seq), and the batch is
        # recomputed from heads read anew.
        self._heads: dict[str, dict[str, ChainHead]] = {}

    async def collection(self) -> AsyncCollection[MongoDoc]:
        name = self._fixed or await self._registry.live_collection(AUDIT)
        return self._db[name]

    async def ensure_indexes(self) -> None:
        await ensure_trail_indexes(await self.collection())

    async def head(self, chain: str, coll: AsyncCollection[MongoDoc] | None = None) -> ChainHead:
        coll = coll if coll is not None else await self.collection()
        doc = await coll.find_one({"chain": chain}, {"seq": 1, "hash": 1}, sort=[("seq", DESCENDING)])
        return ChainHead(int(doc["seq"]), str(doc["hash"])) if doc else ChainHead()

    async def positions(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Per partition, the offset after the last recorded log record (0: nothing yet)."""
        coll = await self.collection()
        out: dict[int, int] = {}
        for p in partitions:
            doc = await coll.find_one({"chain": chain_name(topic, p)}, {"log_offset": 1}, sort=[("seq", DESCENDING)])
            out[p] = int(doc["log_offset"]) + 1 if doc else 0
        return out

    async def append(self, topic: str, records: Sequence[tuple[int, int, LogItem]]) -> int:
        """Record (partition, offset, event or rejection) entries of ``topic``, in log order.

        Idempotent: an id already in the trail (a redelivery, or a repeated copy in the log) is
        skipped. Each chain's head is loaded once per batch. If another writer appended to the
        same chain meanwhile (a rebuild catching up), the batch is recomputed from the new heads.
        Returns the number of records inserted.
        """
        if not records:
            return 0
        coll = await self.collection()
        for attempt in range(_APPEND_ATTEMPTS):
            try:
                return await self._append_once(coll, topic, records)
            except (BulkWriteError, DuplicateKeyError) as exc:
                self._heads.pop(coll.name, None)
                if not only_duplicates(exc) or attempt == _APPEND_ATTEMPTS - 1:
                    raise
                log.info("audit chain moved under a concurrent writer; recomputing the batch")
            except BaseException:
                self._heads.pop(coll.name, None)
                raise
        raise AssertionError("unreachable")

    async def _append_once(
        self, coll: AsyncCollection[MongoDoc], topic: str, records: Sequence[tuple[int, int, LogItem]]
    ) -> int:
        by_partition: dict[int, list[tuple[int, LogItem]]] = {}
        for partition, offset, item in records:
            by_partition.setdefault(partition, []).append((offset, item))
        ids = list({item_id(item) for _, _, item in records})
        known: set[str] = set()
        async for doc in coll.find({"_id": {"$in": ids}}, {"_id": 1}):
            known.add(str(doc["_id"]))
        pending = {
            partition: items
            for partition, items in by_partition.items()
            if not all(item_id(item) in known for _, item in items)
        }
        cached = self._heads.setdefault(coll.name, {})
        unknown = [chain_name(topic, p) for p in pending if chain_name(topic, p) not in cached]
        for chain, head in zip(unknown, await asyncio.gather(*(self.head(c, coll) for c in unknown)), strict=True):
            cached[chain] = head
        docs: list[MongoDoc] = []
        heads: dict[str, ChainHead] = {}
        for partition, items in pending.items():
            chain = chain_name(topic, partition)
            new = extend_chain(items, topic=topic, partition=partition, head=cached[chain], known_ids=known)
            docs.extend(record.to_doc() for record in new)
            if new:
                heads[chain] = new[-1].head
        if docs:
            await coll.insert_many(docs, ordered=True)
        cached.update(heads)
        if self._fixed is None:
            # How far each chain has got: lets verification tell a truncated chain from a
            # chain that has not reached the log tail yet. Written after the records.
            reached: dict[int, int] = {}
            for partition, offset, _ in records:
                reached[partition] = max(reached.get(partition, 0), offset + 1)
            await Positions(self._db).save(AUDIT, topic, reached)
        return len(docs)


async def ensure_trail_indexes(coll: AsyncCollection[MongoDoc]) -> None:
    await coll.create_indexes(
        [
            IndexModel([("chain", ASCENDING), ("seq", ASCENDING)], unique=True, name="chain_seq"),
            IndexModel([("actor_id", ASCENDING), ("occurred_at", ASCENDING)], name="actor_time"),
            IndexModel([("subject", ASCENDING), ("occurred_at", ASCENDING)], name="subject_time"),
            IndexModel([("occurred_at", ASCENDING)], name="time"),
        ]
    )


async def live_trail_collection(db: AsyncDatabase[MongoDoc]) -> str:
    """The trail's live collection name, without creating a registry entry."""
    entry = await ProjectionRegistry(db).entry(AUDIT)
    return str(entry["collection"]) if entry else collection_for(AUDIT, 1)


# --- verification ---------------------------------------------------------------------------


@dataclass
class VerifyReport:
    records: int = 0
    chains: int = 0
    pending: int = 0
    collection: str = ""
    first_break: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.first_break is None

    def summary(self) -> str:
        if self.first_break is not None:
            return f"audit trail broken: {self.first_break.describe()}"
        return (
            f"audit trail verified: {self.records} records in {self.chains} chains, {self.pending} log records pending"
        )


async def verify_trail(
    settings: Settings,
    db: AsyncDatabase[MongoDoc],
    *,
    collection: str | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 2000,
) -> VerifyReport:
    """Recompute every chain in seq order and cross-check it against the log.

    Streams both sides (a cursor over the chain, the log partition read alongside), so
    memory does not grow with the trail. Stops at the first break.
    """
    live = await live_trail_collection(db)
    name = collection or live
    coll = db[name]
    report = VerifyReport(collection=name)
    expected_chains: set[str] = set()
    topics = [
        (settings.events_topic, decode_event_record),
        *((topic, decode_rejection_record) for topic in settings.rejection_topics),
    ]
    for topic, decode in topics:
        reached = await Positions(db).load(AUDIT, topic) if name == live else {}
        async with LogReader(settings, topic, batch_size=batch_size) as reader:
            snapshot = dict(reader.end_offsets)
            for p in reader.partitions:
                chain = chain_name(topic, p)
                expected_chains.add(chain)
                found = await _verify_chain(
                    settings,
                    coll,
                    reader,
                    decode,
                    chain,
                    p,
                    min(snapshot.get(p, 0), reached.get(p, 0)),
                    snapshot,
                    report,
                    progress,
                )
                if found is not None:
                    report.first_break = found
                    return report
    # Records in chains that no log partition has: forged. (distinct walks the (chain, seq) index.)
    for chain in sorted(str(c) for c in await coll.distinct("chain") if c not in expected_chains):
        doc = await coll.find_one({"chain": chain}, sort=[("seq", ASCENDING)])
        if doc is not None:
            record = AuditRecord.from_doc(doc)
            report.first_break = ChainBreak(
                record.chain, record.seq, record._id, "inserted record", "no such log partition"
            )
            break
    return report


async def _verify_chain(
    settings: Settings,
    coll: AsyncCollection[MongoDoc],
    reader: LogReader,
    decode: Decoder[LogItem],
    chain: str,
    partition: int,
    reached: int,
    snapshot: dict[int, int],
    report: VerifyReport,
    progress: Callable[[int], None] | None,
) -> ChainBreak | None:
    checker = ChainChecker(chain)
    log = _PartitionLog(settings, reader, decode, partition, snapshot.get(partition, 0))
    try:
        current = await log.open()
        cursor = coll.find({"chain": chain}).sort("seq", ASCENDING).batch_size(2000)
        async for doc in cursor:
            record = AuditRecord.from_doc(doc)
            found = checker.check(record)
            if found is not None:
                return found
            looked_again = False
            while True:
                # Log records before this one's offset have no record: each must be a repeated copy.
                while current is not None and current.offset < record.log_offset:
                    missing = await _unrecorded(coll, chain, current)
                    if missing is not None:
                        return ChainBreak(chain, record.seq, record._id, "missing record", missing)
                    current = await log.next()
                # A record past the snapshot: the platform is live and the log has grown since
                # (a record is only ever written after its log record), so look at the end again.
                if current is None and record.log_offset >= log.end and not looked_again:
                    looked_again = True
                    current = await log.extend()
                    continue
                break
            at_offset = current.value if current is not None and current.offset == record.log_offset else None
            found = check_against_log(record, at_offset)
            if found is not None:
                return found
            current = await log.next() if at_offset is not None else current
            report.records += 1
            if progress is not None and report.records % 10_000 == 0:
                progress(report.records)
        # Up to where the trail is known to have reached, every log record needs a record.
        while current is not None and current.offset < reached:
            missing = await _unrecorded(coll, chain, current)
            if missing is not None:
                return ChainBreak(
                    chain,
                    checker.head.seq + 1,
                    None,
                    "missing record",
                    f"{missing} (the trail had reached offset {reached})",
                )
            current = await log.next()
        if checker.count:
            report.chains += 1
        # The log tail the trail has not reached yet (repeated copies it has passed do not count).
        report.pending += max(0, log.end - max(checker.last_offset + 1, reached))
    finally:
        await log.close()
    return None


class _PartitionLog:
    """One partition of the log read alongside a chain, up to an end that can be moved on."""

    def __init__(
        self, settings: Settings, reader: LogReader, decode: Decoder[LogItem], partition: int, end: int
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.decode = decode
        self.partition = partition
        self.end = end
        self._entries: AsyncGenerator[LogEntry[LogItem]] | None = None

    async def open(self, start: int = 0) -> LogEntry[LogItem] | None:
        await self.close()
        self._entries = _entries(self.reader, self.decode, self.partition, start, self.end)
        return await self.next()

    async def next(self) -> LogEntry[LogItem] | None:
        return await anext(self._entries, None) if self._entries is not None else None

    async def extend(self) -> LogEntry[LogItem] | None:
        """Read on to the log's current end; the next entry after the old end, if any."""
        ends = await log_end_offsets(self.settings, [self.reader.topic])
        fresh = ends.get(self.reader.topic, {}).get(self.partition, self.end)
        if fresh <= self.end:
            return None
        start, self.end = self.end, fresh
        return await self.open(start)

    async def close(self) -> None:
        if self._entries is not None:
            await self._entries.aclose()
            self._entries = None


async def _entries(
    reader: LogReader, decode: Decoder[LogItem], partition: int, start: int, end: int
) -> AsyncGenerator[LogEntry[LogItem]]:
    batches: AsyncIterator[list[LogEntry[LogItem]]] = reader.batches(
        decode, start={partition: start}, end={partition: end}, partitions=[partition]
    )
    async for batch in batches:
        for entry in batch:
            yield entry


async def _unrecorded(coll: AsyncCollection[MongoDoc], chain: str, entry: LogEntry[LogItem]) -> str | None:
    """None when the log entry is a repeated copy of one the chain records at another offset.

    The trail records each item once, by id. Usually that is its first copy in the log; when two
    workers append to one chain at once (a partition changing hands), the one that wins the next
    seq may hold a later copy, and the other finds the id recorded and skips its own. Either way the
    entry is accounted for, provided it is the very same record: same id, same digest."""
    ident = item_id(entry.value)
    doc = await coll.find_one({"_id": ident}, {"chain": 1, "log_offset": 1, "digest": 1})
    if (
        doc is not None
        and doc.get("chain") == chain
        and int(doc.get("log_offset", -1)) != entry.offset
        and doc.get("digest") == log_digest(entry.value)
    ):
        return None
    topic, partition = split_chain(chain)
    return f"log record {topic}:{partition}@{entry.offset} ({ident}) has no trail record"
