"""Crypto-shredding in the projection runtime, against the real MongoDB: sealed events are opened for
the views, an erasure redacts every view, and a batch that used a key destroyed meanwhile is
redacted again, so that the views never keep what they opened with it."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from domain.envelope import EventEnvelope
from infra.kafka.codec import encode_event
from infra.mongo.key_store import MongoKeyStore
from infra.security.shredding import KeyRing, seal
from infra.settings import Settings
from streams.runtime import ProjectionRuntime, Record
from tests.integration.test_projection_runtime import FakeDeadLetters, FakePusher, live_docs, runtime_in
from tests.unit.app.scenario import USERS, Scenario

pytestmark = pytest.mark.integration

A, B, _, _ = USERS
ERASED = "[erased]"


@dataclass
class RecordedEffects:
    """The erasure's effects (objects, caches, gateways), recorded: who they ran for."""

    users: list[str] = field(default_factory=list)

    async def erased(self, user_id: str) -> None:
        self.users.append(user_id)


@dataclass
class Env:
    runtime: ProjectionRuntime
    db: AsyncDatabase[dict[str, Any]]
    keys: KeyRing
    store: MongoKeyStore
    effects: RecordedEffects


@pytest.fixture
async def env(stack_settings: Settings) -> AsyncIterator[Env]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack_settings.mongo_url, tz_aware=True)
    name = f"test_erasure_{uuid.uuid4().hex[:8]}"
    settings = stack_settings.model_copy(update={"mongo_db": name, "topic_prefix": f"er-{uuid.uuid4().hex[:8]}"})
    db = client[name]
    store = MongoKeyStore(client[f"{name}_keys"])
    keys = KeyRing(store, secrets.token_urlsafe(32))
    effects = RecordedEffects()
    runtime = runtime_in(settings, db, FakePusher(), FakeDeadLetters(), keys=keys, erasure=effects)
    try:
        yield Env(runtime, db, keys, store, effects)
    finally:
        await client.drop_database(name)
        await client.drop_database(f"{name}_keys")
        await client.close()


async def sealed_records(env: Env, events: list[EventEnvelope], start: int = 0) -> list[Record]:
    """The records as the worker appends them: personal fields sealed under their users' keys."""
    keys = await env.keys.data_keys(USERS, create=True)
    return [Record(0, start + i, encode_event(seal(e, keys))[1]) for i, e in enumerate(events)]


async def view(env: Env, name: str) -> list[dict[str, Any]]:
    return await live_docs(env.runtime, env.db, name)


async def test_sealed_events_reach_the_views_opened_and_the_trail_sealed(env: Env) -> None:
    s = Scenario()
    conv = s.create_group(A, [B], "team")
    s.on(conv, "message:send", A, body="for your eyes")
    batch = await sealed_records(env, s.log)
    assert b"for your eyes" not in b"".join(r.value for r in batch)
    await env.runtime.events_batch(batch)
    assert [m["body"] for m in await view(env, "messages")] == ["for your eyes"]
    trail = b"".join(str(doc).encode() for doc in await view(env, "audit"))
    assert b"for your eyes" not in trail, "the trail chains the records as stored"


async def test_an_erasure_redacts_every_view_and_runs_its_effects(env: Env) -> None:
    s = Scenario()
    for i, user in enumerate((A, B)):
        s.register(user, f"user{i}")
    conv = s.create_group(A, [B], "team")
    s.on(conv, "message:send", A, body="from a")
    s.on(conv, "message:send", B, body="from b")
    await env.runtime.events_batch(await sealed_records(env, s.log))
    erase = s.run(s.command("user:erase", f"account:{A}", A, {"user_id": A}))
    assert erase.outcome.ok and [e.type for e in erase.events] == ["UserErased"]
    await env.keys.erase(A)  # what the worker does before it appends UserErased
    await env.runtime.events_batch(await sealed_records(env, erase.events, start=len(s.log) - 1))
    bodies = {m["sender_id"]: m["body"] for m in await view(env, "messages")}
    assert bodies == {A: ERASED, B: "from b"}
    users = {u["_id"]: u for u in await view(env, "users")}
    assert users[A]["username"] == ERASED and users[A]["username_normalised"] == f"{ERASED}:{A}"
    assert users[B]["username"] == "user1"
    (conversation,) = await view(env, "conversations")
    assert conversation["last_message"]["body"] == "from b"
    assert env.effects.users == [A]
    # A redelivery of the whole log folds to the same views (the rebuild's path).
    before = {name: await view(env, name) for name in ("messages", "users", "conversations")}
    await env.runtime.events_batch(await sealed_records(env, s.log))
    assert {name: await view(env, name) for name in before} == before


async def test_a_key_destroyed_while_a_batch_used_it_is_redacted_after_the_batch(env: Env) -> None:
    s = Scenario()
    conv = s.create_group(A, [B], "team")
    s.on(conv, "message:send", A, body="opened with a cached key")
    batch = await sealed_records(env, s.log)  # the ring caches A's key
    await env.store.destroy(A)  # erased by another worker: this ring still holds the key
    await env.runtime.events_batch(batch)
    assert [m["body"] for m in await view(env, "messages")] == [ERASED]
    assert env.effects.users == [], "the effects belong to the UserErased event, not to this check"
