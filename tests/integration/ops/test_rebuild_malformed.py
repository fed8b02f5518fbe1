"""Rebuild == incremental for a malformed log: the live agent and a rebuild run one projection
runner, so they leave out (park) the same records for the same reasons and build the same views."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from infra.mongo.documents import ProjectionRegistry
from infra.rebuild import Parked, rebuild_projection
from projections.base import DocumentProjection
from projections.catalog import DOCUMENT_PROJECTIONS
from tests.integration.ops.conftest import OpsEnv
from tests.integration.ops.live import LiveAgent, documents
from tests.integration.ops.test_rebuild import Fragile, MessageCounts, expected_docs
from tests.unit.ops.events import LogBuilder

GARBAGE = b'{"not": "an event"'


class Collected:
    """The live agent's dead-letter topic, kept in memory."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.parked: list[Parked] = []

    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None:
        self.parked.append(Parked(source_topic, partition, offset, reason))


async def test_live_and_rebuild_park_the_same_records_and_build_the_same_views(ops: OpsEnv) -> None:
    await ops.create_topics(events=2)
    log = LogBuilder(seed=43)
    users = [log.user(f"u{i}") for i in range(3)]
    conversations = [log.conversation(users[0], users[1:]) for _ in range(3)]
    for n in range(60):
        log.message(conversations[n % 3], users[n % 3], "boom" if n in (7, 41) else f"fine {n}")
    # A MessageSent stored at a schema version this code base does not know: no upcaster reaches it.
    future = log.message(conversations[1], users[1], "from the future")
    unreadable = future.model_copy(update={"schema_version": 99})
    log.events[log.events.index(future)] = unreadable
    for n in range(60, 80):
        log.message(conversations[n % 3], users[n % 3], f"fine {n}")
    photo = log.upload(conversations[0], users[0])
    log.message(conversations[0], users[0], "a photo", attachments=[photo])
    log.upload(conversations[2], users[2], complete=False)
    log.publish_keys(users[0], "phone", 1, 2)
    log.claim(users[0], users[1], [("phone", 1)])
    half = len(log.events) // 2
    await ops.produce(log.events[:half])
    producer = AIOKafkaProducer(bootstrap_servers=ops.settings.kafka_bootstrap)
    await producer.start()
    try:
        garbage_at = await producer.send_and_wait(ops.settings.events_topic, GARBAGE, partition=0)
    finally:
        await producer.stop()
    await ops.produce(log.events[half:])

    projections: dict[str, DocumentProjection] = {"fragile": Fragile(), **DOCUMENT_PROJECTIONS}
    dead = Collected(ops.settings.events_topic)
    agent = LiveAgent(ops.settings, ops.db, projections, audit=False, batch_size=3, dead_letters=dead)
    await agent.step()

    # The live agent parked all three kinds, each once.
    reasons = [p.reason.split(":")[0] for p in dead.parked]
    assert sorted(reasons) == ["fragile", "fragile", "undecodable", "upcast"], dead.parked
    assert (garbage_at.partition, garbage_at.offset) in {(p.partition, p.offset) for p in dead.parked}
    registry = ProjectionRegistry(ops.db)
    healthy = [e for e in log.events if e is not unreadable and "boom" not in str(e.payload.get("body", ""))]
    live_fragile = await documents(ops.db, await registry.live_collection("fragile"))
    assert live_fragile == expected_docs(MessageCounts(), healthy)

    for name in projections:
        live = await documents(ops.db, await registry.live_collection(name))
        assert live, name
        report = await rebuild_projection(ops.settings, name, projections=projections, settle_s=0.0)
        assert await documents(ops.db, report.collection) == live, name
        parked_live = [p for p in dead.parked if p.reason.split(":")[0] in ("undecodable", "upcast", name)]
        key = lambda p: (p.partition, p.offset, p.reason)  # noqa: E731
        assert sorted(report.parked, key=key) == sorted(parked_live, key=key), name
