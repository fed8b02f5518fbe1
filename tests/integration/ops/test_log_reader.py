"""The log reader against a real broker: snapshots, batches, heap merge, repeated copies."""

from __future__ import annotations

from datetime import datetime

from infra.kafka.log_reader import LogEntry, LogReader, StreamDedupe, decode_event_record
from infra.kafka.offsets import committed_offsets, log_end_offsets
from tests.integration.ops.conftest import OpsEnv
from tests.unit.ops.events import chat_log


def _order(entry: LogEntry) -> tuple[datetime, int, int]:  # type: ignore[type-arg]
    return entry.value.occurred_at, entry.partition, entry.offset


async def test_reads_every_record_once_up_to_the_snapshot(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    log = chat_log(seed=3, messages=60)
    await ops.produce(log.events)
    async with LogReader(ops.settings, ops.settings.events_topic, batch_size=7) as reader:
        assert reader.partitions == [0, 1, 2]
        assert reader.total == len(log.events)
        await ops.produce(chat_log(seed=4, messages=5).events)  # after the snapshot: not read
        seen = [entry async for batch in reader.batches(decode_event_record) for entry in batch]
        assert len(seen) == len(log.events)
        assert {e.value.event_id for e in seen} == {e.event_id for e in log.events}
        for p in reader.partitions:  # each partition in offset order
            offsets = [e.offset for e in seen if e.partition == p]
            assert offsets == sorted(offsets)
        # Catching up reads exactly the records appended since.
        before = dict(reader.positions)
        await reader.refresh_end_offsets()
        more = [e async for batch in reader.batches(decode_event_record, start=before) for e in batch]
        assert len(more) == len(chat_log(seed=4, messages=5).events)


async def test_merge_is_oldest_first_across_partitions_and_drops_repeated_copies(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    log = chat_log(seed=5, messages=80)
    await ops.produce(log.events)
    await ops.produce(log.events[10:20])  # a producer retry: identical copies later in the log
    async with LogReader(ops.settings, ops.settings.events_topic) as reader:
        dedupe = StreamDedupe()

        def decode(record):  # type: ignore[no-untyped-def]
            event = decode_event_record(record)
            return event if event is not None and dedupe.is_new(event) else None

        merged = [e async for e in reader.merged(decode, _order, buffer_per_partition=4)]
    assert [e.value.event_id for e in merged] == [e.event_id for e in log.events]  # time order == log order
    keys = [_order(e) for e in merged]
    assert keys == sorted(keys)


async def test_missing_topic_reads_as_empty_without_creating_it(ops: OpsEnv) -> None:
    async with LogReader(ops.settings, ops.settings.events_topic) as reader:
        assert reader.partitions == []
        assert [b async for b in reader.batches(decode_event_record)] == []
    assert await log_end_offsets(ops.settings, [ops.settings.events_topic]) == {ops.settings.events_topic: {}}


async def test_committed_offsets_of_a_group(ops: OpsEnv) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    await ops.create_topics(events=2)
    await ops.produce(chat_log(seed=6, messages=10).events)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=ops.settings.kafka_bootstrap, group_id="ops-group", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(ops.settings.events_topic, 1)
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(3, "")})
    finally:
        await consumer.stop()
    assert await committed_offsets(ops.settings, "ops-group", ops.settings.events_topic) == {1: 3}
