"""The projection runtime announces, once per batch, what the read models now hold (real MongoDB)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

import streams.runtime
from domain.conversation import conversation_stream_id
from domain.envelope import EventEnvelope
from domain.names import username_stream_id
from infra.kafka.codec import encode_event
from infra.mongo.audit_trail import AuditTrail
from infra.mongo.documents import Positions, ProjectionRegistry
from infra.settings import Settings
from projections.pushes import Push
from streams.runtime import ProjectionRuntime, Record
from tests.unit.app.scenario import INDEX_KEY, USERS, Scenario

pytestmark = pytest.mark.integration

A, B, C, _ = USERS


class Nowhere:
    async def push_all(self, pushes: Sequence[Push]) -> None:
        pass

    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None:
        raise AssertionError(f"nothing should be parked: {reason}")


@dataclass
class Announcements:
    """Records each announcement with what the read models held when it was made."""

    runtime: ProjectionRuntime | None = None
    sent: list[dict[str, int]] = field(default_factory=list)
    views_then: list[dict[str, int]] = field(default_factory=list)  # conversation id -> view version
    made: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(self, versions: Mapping[str, int]) -> None:
        assert self.runtime is not None
        self.sent.append(dict(versions))
        runtime = self.runtime
        coll = runtime.database[await runtime.registry.live_collection("conversations")]
        self.views_then.append({str(d["_id"]): int(d["version"]) async for d in coll.find()})
        self.made.set()


@pytest.fixture
async def runtime(stack_settings: Settings) -> AsyncIterator[ProjectionRuntime]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack_settings.mongo_url, tz_aware=True)
    name = f"test_announce_{uuid.uuid4().hex[:8]}"
    settings = stack_settings.model_copy(update={"mongo_db": name, "topic_prefix": f"an-{uuid.uuid4().hex[:8]}"})
    db: AsyncDatabase[dict[str, Any]] = client[name]
    registry = ProjectionRegistry(db, cache_seconds=0)
    nowhere = Nowhere()
    try:
        yield ProjectionRuntime(
            settings=settings,
            registry=registry,
            positions=Positions(db),
            database=db,
            trail=AuditTrail(db, registry=registry),
            pusher=nowhere,
            dead_letters=nowhere,
        )
    finally:
        await client.drop_database(name)
        await client.close()


def records(events: list[EventEnvelope]) -> list[Record]:
    return [Record(0, i, encode_event(e)[1]) for i, e in enumerate(events)]


async def test_one_announcement_per_batch_once_every_view_and_position_holds_it(runtime: ProjectionRuntime) -> None:
    s = Scenario()
    s.register(C, "carol")
    group = s.create_group(A, [B], "team")
    direct = s.create_direct(A, B)
    for n in range(3):
        s.on(group, "message:send", B, body=f"hello {n}")
    s.on(direct, "message:send", A, body="hi")
    announced = Announcements(runtime)
    runtime.applied = announced
    await runtime.events_batch(records(s.log))
    assert announced.sent == [
        {username_stream_id("carol", INDEX_KEY): 1, conversation_stream_id(group): 4, conversation_stream_id(direct): 2}
    ]
    assert announced.views_then == [{group: 4, direct: 2}], "the conversations view vouches for the rest"
    # The positions are saved beside the announcement (a redelivery re-applies nothing), and by
    # the time the batch is done.
    assert await runtime.positions.load("conversations", runtime.settings.events_topic) == {0: len(s.log)}


async def test_a_failing_announcement_never_fails_the_batch(runtime: ProjectionRuntime) -> None:
    class Broken:
        async def publish(self, versions: Mapping[str, int]) -> None:
            raise ConnectionError("redis down")

    s = Scenario()
    s.on(s.create_direct(A, B), "message:send", A, body="still applied")
    runtime.applied = Broken()
    await runtime.events_batch(records(s.log))
    assert await runtime.positions.load("messages", runtime.settings.events_topic) == {0: len(s.log)}


async def test_a_hanging_announcement_holds_the_batch_only_for_its_bound(
    runtime: ProjectionRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Hangs:
        async def publish(self, versions: Mapping[str, int]) -> None:
            await asyncio.sleep(60)

    monkeypatch.setattr(streams.runtime, "ANNOUNCE_TIMEOUT_S", 0.1)
    s = Scenario()
    s.create_direct(A, B)
    runtime.applied = Hangs()
    async with asyncio.timeout(10):
        await runtime.events_batch(records(s.log))
    assert await runtime.positions.load("conversations", runtime.settings.events_topic) == {0: len(s.log)}


class HeldTrail:
    """The real trail, whose appends wait until released (a slow audit store)."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = False

    async def append(self, topic: str, items: Sequence[tuple[int, int, Any]]) -> int:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return await self.trail.append(topic, items)


class Pushes:
    def __init__(self) -> None:
        self.sent: list[Push] = []
        self.made = asyncio.Event()

    async def push_all(self, pushes: Sequence[Push]) -> None:
        self.sent.extend(pushes)
        self.made.set()


async def test_the_announcement_and_pushes_do_not_wait_for_the_trail_but_the_positions_do(
    runtime: ProjectionRuntime,
) -> None:
    assert isinstance(runtime.trail, AuditTrail)
    held = HeldTrail(runtime.trail)
    runtime.trail = held
    pushes = Pushes()
    runtime.pusher = pushes
    s = Scenario()
    direct = s.create_direct(A, B)
    s.on(direct, "message:send", A, body="acked before the trail has it")
    announced = Announcements(runtime)
    runtime.applied = announced
    topic = runtime.settings.events_topic
    batch = asyncio.create_task(runtime.events_batch(records(s.log)))
    async with asyncio.timeout(10):
        await announced.made.wait()
        await pushes.made.wait()
    assert announced.sent == [{conversation_stream_id(direct): 2}]
    assert {push.event for push in pushes.sent} >= {"message:new"}, "the sockets hear of it before its positions"
    assert held.started.is_set() and not batch.done()
    # No position passes the batch before the trail holds it: a crash now redoes the whole batch.
    assert await runtime.positions.load("conversations", topic) == {}
    assert await runtime.positions.load("audit", topic) == {}
    held.release.set()
    async with asyncio.timeout(10):
        await batch
    assert await runtime.positions.load("conversations", topic) == {0: len(s.log)}
    assert await runtime.positions.load("audit", topic) == {0: len(s.log)}
    trail = runtime.database[await runtime.registry.live_collection("audit")]
    assert await trail.count_documents({}) == len(s.log)


async def test_a_batch_whose_views_fail_abandons_its_trail_append(
    runtime: ProjectionRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(runtime.trail, AuditTrail)
    held = HeldTrail(runtime.trail)
    runtime.trail = held

    async def broken(events: Sequence[EventEnvelope]) -> None:
        raise RuntimeError("a bug after the views")

    monkeypatch.setattr(runtime, "_invalidate", broken)
    s = Scenario()
    s.on(s.create_direct(A, B), "message:send", A, body="never recorded by this attempt")
    with pytest.raises(RuntimeError, match="a bug after the views"):
        async with asyncio.timeout(10):
            await runtime.events_batch(records(s.log))
    assert held.started.is_set() and held.cancelled
    assert await runtime.positions.load("conversations", runtime.settings.events_topic) == {}
