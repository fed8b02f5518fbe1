"""The producer's placement and acknowledgements, and the indexes provisioning creates."""

from __future__ import annotations

from infra.kafka.log_reader import LogReader, decode_event_record, decode_rejection_record
from infra.kafka.producer import EventProducer
from infra.mongo.audit_trail import live_trail_collection
from infra.mongo.documents import ProjectionRegistry
from infra.mongo.indexes import ensure_indexes
from projections.catalog import DOCUMENT_PROJECTIONS
from tests.integration.ops.conftest import OpsEnv
from tests.unit.ops.events import chat_log


async def test_events_of_a_stream_share_a_partition_in_order(ops: OpsEnv) -> None:
    await ops.create_topics(events=3, rejections=2)
    log = chat_log(seed=41, messages=30)
    async with EventProducer(ops.settings) as producer:
        placed = [await producer.send_event(e) for e in log.events]
        refused = await producer.send_rejection(log.rejections[0])
    by_stream: dict[str, set[int]] = {}
    for event, (partition, _) in zip(log.events, placed, strict=True):
        by_stream.setdefault(event.stream_id, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_stream.values())
    assert len({p for p, _ in placed}) > 1
    async with LogReader(ops.settings, ops.settings.events_topic) as reader:
        stored = {
            (e.partition, e.offset): e.value async for batch in reader.batches(decode_event_record) for e in batch
        }
    assert [stored[where] for where in placed] == log.events
    async with LogReader(ops.settings, ops.settings.rejections_topic) as reader:
        rejections = [e async for batch in reader.batches(decode_rejection_record) for e in batch]
    assert [(e.partition, e.offset, e.value) for e in rejections] == [(*refused, log.rejections[0])]


async def test_provisioning_creates_every_index_and_can_run_again(ops: OpsEnv) -> None:
    await ensure_indexes(ops.db)
    await ensure_indexes(ops.db)
    registry = ProjectionRegistry(ops.db)
    for name, projection in DOCUMENT_PROJECTIONS.items():
        coll = await registry.live_collection(name)
        names = {i["name"] async for i in await ops.db[coll].list_indexes()}
        assert {spec.name for spec in projection.indexes if spec.name} <= names, name
    trail = await live_trail_collection(ops.db)
    indexes = {i["name"]: i async for i in await ops.db[trail].list_indexes()}
    assert {"chain_seq", "actor_time", "subject_time", "time"} <= set(indexes)
    assert indexes["chain_seq"].get("unique") is True
    positions = {i["name"] async for i in await ops.db["projection_positions"].list_indexes()}
    assert len(positions) >= 2
