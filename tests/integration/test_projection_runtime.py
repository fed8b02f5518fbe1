"""The worker's projection runtime against the real MongoDB: views, trail, positions, pushes, parking."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from domain.envelope import EventEnvelope
from infra.kafka.codec import encode_event
from infra.mongo.audit_trail import AuditTrail
from infra.mongo.documents import Positions, ProjectionRegistry
from infra.settings import Settings
from projections.pushes import Push
from streams.runtime import ProjectionRuntime, Record
from tests.unit.app.scenario import USERS, Scenario

pytestmark = pytest.mark.integration

A, B, C, _ = USERS


@dataclass
class FakePusher:
    pushes: list[Push] = field(default_factory=list)

    async def push_all(self, pushes: Sequence[Push]) -> None:
        self.pushes.extend(pushes)


@dataclass
class FakeDeadLetters:
    parked: list[tuple[int, int, str]] = field(default_factory=list)

    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None:
        self.parked.append((partition, offset, reason))


@dataclass
class Env:
    runtime: ProjectionRuntime
    db: AsyncDatabase[dict[str, Any]]
    pusher: FakePusher
    dead: FakeDeadLetters


@pytest.fixture
async def env(stack_settings: Settings) -> AsyncIterator[Env]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack_settings.mongo_url, tz_aware=True)
    name = f"test_runtime_{uuid.uuid4().hex[:8]}"
    settings = stack_settings.model_copy(update={"mongo_db": name, "topic_prefix": f"rt-{uuid.uuid4().hex[:8]}"})
    db = client[name]
    pusher, dead = FakePusher(), FakeDeadLetters()
    runtime = runtime_in(settings, db, pusher, dead)
    try:
        yield Env(runtime, db, pusher, dead)
    finally:
        await client.drop_database(name)
        await client.close()


def runtime_in(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], pusher: FakePusher, dead: FakeDeadLetters, **extra: Any
) -> ProjectionRuntime:
    """The worker's projection runtime on ``db``, with fakes for what it pushes and parks."""
    registry = ProjectionRegistry(db, cache_seconds=0)
    return ProjectionRuntime(
        settings=settings,
        registry=registry,
        positions=Positions(db),
        database=db,
        trail=AuditTrail(db, registry=registry),
        pusher=pusher,
        dead_letters=dead,
        **extra,
    )


def records(events: list[EventEnvelope], start: int = 0) -> list[Record]:
    return [Record(0, start + i, encode_event(e)[1]) for i, e in enumerate(events)]


async def live(env: Env, name: str) -> list[dict[str, Any]]:
    return await live_docs(env.runtime, env.db, name)


async def live_docs(runtime: ProjectionRuntime, db: AsyncDatabase[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The documents of projection ``name``'s live collection, by id."""
    coll = await runtime.registry.live_collection(name)
    return [d async for d in db[coll].find().sort("_id")]


async def test_a_batch_reaches_every_view_the_trail_positions_and_participants(env: Env) -> None:
    s = Scenario()
    conv = s.create_group(A, [B], "team")
    sent = s.on(conv, "message:send", B, body="hello")
    await env.runtime.events_batch(records(s.log))
    (message,) = await live(env, "messages")
    assert message["body"] == "hello" and message["_cid"] == sent.events[0].correlation_id
    assert len(await live(env, "audit")) == len(s.log)
    new = [p for p in env.pusher.pushes if p.event == "message:new"]
    assert len(new) == 1 and set(new[0].user_ids) == {A, B}
    positions = await Positions(env.db).load("messages", env.runtime.settings.events_topic)
    assert positions == {0: len(s.log)}


async def test_a_redelivered_batch_changes_no_view_and_pushes_again(env: Env) -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    s.on(conv, "message:send", A, body="once")
    await env.runtime.events_batch(records(s.log))
    views = {name: await live(env, name) for name in ("conversations", "messages", "audit")}
    first = len(env.pusher.pushes)
    await env.runtime.events_batch(records(s.log))  # at-least-once: the same records again
    assert {name: await live(env, name) for name in views} == views
    assert len(env.pusher.pushes) == 2 * first, "pushes are at-least-once, never lost on redelivery"


async def test_undecodable_and_poison_events_are_parked_and_the_rest_applied(env: Env) -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    good = s.on(conv, "message:send", A, body="fine").events[0]
    poison = good.model_copy(
        update={"event_id": str(uuid.uuid4()), "stream_version": 3, "payload": {"message_id": str(uuid.uuid4())}}
    )
    batch = [*records(s.log), Record(0, 2, b"not json"), *records([poison], start=3)]
    await env.runtime.events_batch(batch)
    reasons: dict[int, list[str]] = {}
    for _, offset, reason in env.dead.parked:
        reasons.setdefault(offset, []).append(reason.split(":")[0])
    assert 2 in reasons, "the undecodable record is parked"
    assert {"messages", "conversations"} <= set(reasons[3]), "each projection that cannot apply it parks it"
    assert 0 not in reasons and 1 not in reasons
    assert [m["body"] for m in await live(env, "messages")] == ["fine"]


@dataclass
class OrderedSearch:
    """The real search store, noting what the conversations view held when each search write ended."""

    store: Any
    env: Env
    conversations_seen: list[list[dict[str, Any]]] = field(default_factory=list)

    async def apply(self, events: Any, on_event: Any = None) -> Any:
        folded = await self.store.apply(events, on_event)
        self.conversations_seen.append(await live(self.env, "conversations"))
        return folded

    async def redact(self, user_id: str) -> int:
        return int(await self.store.redact(user_id))


async def test_search_is_applied_before_the_conversations_view_and_parks_poison_alike(env: Env) -> None:
    from infra.search_client import search_client
    from infra.search_index import ElasticsearchIndex
    from infra.search_indexes import alias_names, ensure_search_indexes
    from infra.search_store import SearchStore

    settings = env.runtime.settings
    es = search_client(settings)
    try:
        await ensure_search_indexes(es, settings)
        search = OrderedSearch(SearchStore(es, alias_names(settings), aliases=True), env)
        env.runtime.search = search
        s = Scenario()
        conv = s.create_group(A, [B], "ordered")
        sent = s.on(conv, "message:send", B, body="indexed before the view moves")
        good = s.log[-1]
        poison = good.model_copy(
            update={"event_id": str(uuid.uuid4()), "stream_version": 3, "payload": {"message_id": str(uuid.uuid4())}}
        )
        await env.runtime.events_batch([*records(s.log), *records([poison], start=len(s.log))])
        assert search.conversations_seen[0] == [], "the conversations view is written after the search indexes"
        (hit,) = await ElasticsearchIndex(es, alias_names(settings)).messages("indexed", [conv], 10)
        assert hit["message_id"] == sent.outcome.data["message_id"]
        assert any(offset == len(s.log) and reason.startswith("search:") for _, offset, reason in env.dead.parked)
        positions = await Positions(env.db).load("search", settings.events_topic)
        assert positions == {0: len(s.log) + 1}
    finally:
        await es.indices.delete(index=f"{settings.topic_prefix}-*", ignore_unavailable=True)
        await es.close()
