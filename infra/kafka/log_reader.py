"""Reading the log from the beginning (or given offsets) up to a snapshot of its end.

A plain consumer with every partition assigned (no group: reading the log must never make a
running worker rebalance), fetched in batches so that a long log never sits in memory. Two shapes:

- ``LogReader.batches``: lists of entries, each partition in offset order (what a rebuild
  or the audit trail needs: streams are partition-local);
- ``LogReader.merged``: one entry at a time, oldest first across partitions, ordered by a
  key such as (occurred_at, partition, offset), with a bounded buffer per partition.

The producer is at-least-once: a record may appear twice (identical copies, same ids).
``StreamDedupe`` drops the second copy of an event using the per-stream version, which
needs memory per stream, not per event.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from domain.envelope import EventEnvelope, Rejection
from infra.kafka.codec import decode_event, decode_rejection
from infra.kafka.offsets import (
    LogUnavailable,
    end_offsets,
    plain_consumer,
    start_consumer,
    stop_consumer,
    topic_partitions,
)
from infra.settings import Settings
from projections.runner import Record as RunnerRecord

log = logging.getLogger(__name__)

T = TypeVar("T")


class Record(Protocol):
    """The fields of aiokafka's ConsumerRecord that readers use."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


Decoder = Callable[[Record], T | None]


class LogEntry(NamedTuple, Generic[T]):
    partition: int
    offset: int
    value: T


def decode_event_record(record: Record) -> EventEnvelope | None:
    """The event in a record, or None (logged) for a record that is not a valid event."""
    if record.value is None:
        return None
    try:
        return decode_event(record.value)
    except (ValidationError, ValueError):
        log.warning("skipping undecodable record %s:%s@%s", record.topic, record.partition, record.offset)
        return None


def decode_rejection_record(record: Record) -> Rejection | None:
    if record.value is None:
        return None
    try:
        return decode_rejection(record.value)
    except (ValidationError, ValueError):
        log.warning("skipping undecodable record %s:%s@%s", record.topic, record.partition, record.offset)
        return None


class StreamDedupe:
    """Drops repeated copies of events: a stream's versions only grow, so a version at or
    below the last one seen for that stream is a copy already delivered."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def is_new(self, event: EventEnvelope) -> bool:
        last = self._last.get(event.stream_id, 0)
        if event.stream_version <= last:
            return False
        self._last[event.stream_id] = event.stream_version
        return True

    def __len__(self) -> int:
        return len(self._last)


class LogReader:
    """One topic, read with a group-less consumer up to the end offsets snapshotted at start.

    Use as ``async with LogReader(settings, topic) as reader:``. ``positions`` holds, per
    partition, the next offset after what has been read (for saving and catching up).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        *,
        batch_size: int = 2000,
        timeout_s: float = 10.0,
        client_id: str = "parley-log-reader",
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self.partitions: list[int] = []
        self.end_offsets: dict[int, int] = {}
        self.positions: dict[int, int] = {}

    async def start(self) -> LogReader:
        consumer = plain_consumer(
            self.settings, client_id=self._client_id, max_records=self.batch_size, timeout_s=self.timeout_s
        )
        await start_consumer(consumer, self.settings.kafka_bootstrap, self.timeout_s)
        self._consumer = consumer
        try:
            self.partitions = await topic_partitions(consumer, self.topic, self.timeout_s)
            await self.refresh_end_offsets()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await stop_consumer(consumer)

    async def __aenter__(self) -> LogReader:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("LogReader is not started")
        return self._consumer

    @property
    def total(self) -> int:
        """Records in the snapshot (from offset 0: the sum of end offsets)."""
        return sum(self.end_offsets.values())

    async def refresh_end_offsets(self) -> dict[int, int]:
        """Take a new snapshot of the end offsets (for catching up) and return it."""
        if not self.partitions:
            # The topic may have been created since: look again (all-topics metadata, no auto-create).
            self.partitions = await topic_partitions(self.consumer, self.topic, self.timeout_s)
        self.end_offsets = await end_offsets(self.consumer, self.topic, self.partitions, self.timeout_s)
        return dict(self.end_offsets)

    async def raw_batches(
        self,
        start: Mapping[int, int] | None = None,
        end: Mapping[int, int] | None = None,
        partitions: Iterable[int] | None = None,
    ) -> AsyncIterator[list[Record]]:
        """Undecoded records from ``start`` (default 0) up to ``end`` (default: the snapshot)."""
        parts = sorted(self.partitions if partitions is None else set(partitions) & set(self.partitions))
        stop_at, active, tps = self._assign(parts, start, end)
        if not active:
            return
        consumer = self.consumer
        last_progress = time.monotonic()
        while active:
            try:
                data = await consumer.getmany(
                    *[tps[p] for p in sorted(active)], timeout_ms=500, max_records=self.batch_size
                )
            except (KafkaError, OSError) as exc:
                raise LogUnavailable(f"reading {self.topic} failed: {exc}") from exc
            out: list[Record] = []
            for tp, records in data.items():
                p = tp.partition
                if p not in active:
                    continue
                limit = stop_at[p]
                for record in records:
                    if record.offset >= limit:
                        break
                    out.append(record)
                if records:
                    self.positions[p] = min(limit, records[-1].offset + 1)
                if self.positions[p] >= limit:
                    active.discard(p)
            if out or any(data.values()):
                last_progress = time.monotonic()
            elif active:
                await self._check_stalled(active, tps, stop_at, last_progress)
            if out:
                yield out

    async def _check_stalled(
        self, active: set[int], tps: dict[int, TopicPartition], stop_at: dict[int, int], since: float
    ) -> None:
        # No records: either the partition's remaining offsets hold no records (gaps), or
        # the broker stopped answering. The consumer's fetch position tells them apart.
        for p in list(active):
            try:
                position = await asyncio.wait_for(self.consumer.position(tps[p]), self.timeout_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise LogUnavailable(f"reading {self.topic}:{p} failed: {exc}") from exc
            if position >= stop_at[p]:
                self.positions[p] = stop_at[p]
                active.discard(p)
        if active and time.monotonic() - since > self.timeout_s:
            where = ", ".join(f"{self.topic}:{p}@{self.positions.get(p, 0)}" for p in sorted(active))
            raise LogUnavailable(f"no progress reading the log for {self.timeout_s:.0f}s at {where}")

    def _assign(
        self, parts: list[int], start: Mapping[int, int] | None, end: Mapping[int, int] | None
    ) -> tuple[dict[int, int], set[int], dict[int, TopicPartition]]:
        """Where each partition starts and stops; assigns and positions the consumer on those with work."""
        begin = {p: int((start or {}).get(p, 0)) for p in parts}
        stop_at = {p: int((end or self.end_offsets).get(p, self.end_offsets.get(p, 0))) for p in parts}
        self.positions.update(begin)
        active = {p for p in parts if begin[p] < stop_at[p]}
        tps = {p: TopicPartition(self.topic, p) for p in parts}
        if active:
            self.consumer.assign([tps[p] for p in sorted(active)])
            for p in active:
                self.consumer.seek(tps[p], begin[p])
        return stop_at, active, tps

    async def batches(
        self,
        decode: Decoder[T],
        start: Mapping[int, int] | None = None,
        end: Mapping[int, int] | None = None,
        partitions: Iterable[int] | None = None,
    ) -> AsyncIterator[list[LogEntry[T]]]:
        """Decoded entries in batches; records the decoder refuses (None) are left out."""
        async for records in self.raw_batches(start, end, partitions):
            out: list[LogEntry[T]] = []
            for record in records:
                value = decode(record)
                if value is not None:
                    out.append(LogEntry(record.partition, record.offset, value))
            if out:
                yield out

    async def merged(
        self,
        decode: Decoder[T],
        key: Callable[[LogEntry[T]], Any],
        start: Mapping[int, int] | None = None,
        end: Mapping[int, int] | None = None,
        buffer_per_partition: int = 500,
    ) -> AsyncIterator[LogEntry[T]]:
        """Entries one at a time, smallest ``key`` first across partitions (a heap merge).

        Each partition is in offset order already, so the merge only needs the head of each
        partition: at most ``buffer_per_partition`` decoded entries are buffered per partition.
        ``key`` should end with (partition, offset) to be total, e.g.
        ``lambda e: (e.value.occurred_at, e.partition, e.offset)``.
        """
        parts = list(self.partitions)
        stop_at, active, tps = self._assign(parts, start, end)
        if not active:
            return
        consumer = self.consumer
        buffers: dict[int, deque[LogEntry[T]]] = {p: deque() for p in parts}
        heap: list[tuple[Any, int, int, LogEntry[T]]] = []
        pending = set(active)  # active partitions without a head in the heap
        last_progress = time.monotonic()
        while True:
            while pending:
                need = sorted(p for p in pending if p in active)
                if need:
                    try:
                        data = await consumer.getmany(
                            *[tps[p] for p in need], timeout_ms=500, max_records=buffer_per_partition
                        )
                    except (KafkaError, OSError) as exc:
                        raise LogUnavailable(f"reading {self.topic} failed: {exc}") from exc
                    for tp, records in data.items():
                        p = tp.partition
                        if p not in active:
                            continue
                        limit = stop_at[p]
                        for record in records:
                            if record.offset >= limit:
                                break
                            value = decode(record)
                            if value is not None:
                                buffers[p].append(LogEntry(p, record.offset, value))
                        if records:
                            self.positions[p] = min(limit, records[-1].offset + 1)
                            last_progress = time.monotonic()
                        if self.positions[p] >= limit:
                            active.discard(p)
                            consumer.pause(tp)
                    if not any(data.values()) and active:
                        await self._check_stalled(active, tps, stop_at, last_progress)
                for p in list(pending):
                    if buffers[p]:
                        entry = buffers[p].popleft()
                        heapq.heappush(heap, (key(entry), p, entry.offset, entry))
                        pending.discard(p)
                    elif p not in active:
                        pending.discard(p)
            if not heap:
                return
            _, p, _, entry = heapq.heappop(heap)
            yield entry
            if buffers[p]:
                nxt = buffers[p].popleft()
                heapq.heappush(heap, (key(nxt), p, nxt.offset, nxt))
            elif p in active:
                pending.add(p)


class KafkaRecordSource:
    """``streams.runtime.RecordSource`` over the log: what the worker's consumer skipped, read back."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[RunnerRecord]:
        out: list[RunnerRecord] = []
        async with LogReader(self._settings, topic, client_id="parley-worker-holes") as reader:
            async for batch in reader.raw_batches(
                start={partition: start}, end={partition: end}, partitions=[partition]
            ):
                out += [RunnerRecord(r.partition, r.offset, r.value) for r in batch if r.value is not None]
        return out
