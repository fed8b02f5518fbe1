"""The MongoDB document store against the real server: idempotent batches, rebuild == incremental."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from domain.keys import keys_stream_id
from infra.mongo.documents import DocumentStore, Positions, ProjectionRegistry
from infra.search_client import search_client
from infra.search_indexes import MAPPINGS, alias_name
from infra.settings import Settings
from projections.catalog import DOCUMENT_PROJECTIONS
from tests.unit.app.scenario import USERS, Scenario
from tests.unit.domain.test_keys import publish_payload

pytestmark = pytest.mark.integration

A, B, C, _ = USERS


@pytest.fixture
async def scratch_db(stack_settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack_settings.mongo_url, tz_aware=True)
    name = f"test_store_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


def scenario_log() -> list[Any]:
    """Overlapping batches of it repeat creating events together with later changes of their
    documents (edits, reactions, a second device in one key directory)."""
    s = Scenario()
    s.register(A, "alice")
    group = s.create_group(A, [B, C], "team")
    for i in range(30):
        sender = USERS[i % 3]
        message_id = s.on(group, "message:send", sender, body=f"m{i}").outcome.data["message_id"]
        if i % 4 == 0:
            s.on(group, "message:edit", sender, message_id=message_id, body=f"m{i} edited")
        if i % 5 == 0:
            s.on(group, "message:react", B, message_id=message_id, emoji="👍", on=True)
        if i in (3, 9):
            payload = publish_payload(device=f"d{i % 2}", identity=1, first=100 * i, count=2)
            s.run(s.command("keys:publish", keys_stream_id(A), A, payload))
    s.on(group, "conversation:remove-participant", A, user_id=C)
    s.on(group, "message:read", B, seq=12)
    return s.log


async def dump(db: AsyncDatabase[dict[str, Any]], collection: str) -> list[dict[str, Any]]:
    return [doc async for doc in db[collection].find().sort("_id")]


async def test_batches_with_redeliveries_equal_one_clean_pass(scratch_db: AsyncDatabase[dict[str, Any]]) -> None:
    log = scenario_log()
    for name, projection in DOCUMENT_PROJECTIONS.items():
        clean = DocumentStore(scratch_db[f"clean_{name}"], projection)
        await clean.ensure_indexes()
        await clean.apply(log)
        live = DocumentStore(scratch_db[f"live_{name}"], projection)
        await live.ensure_indexes()
        for start in range(0, len(log), 7):
            await live.apply(log[max(0, start - 3) : start + 7])  # overlapping batches: redeliveries
        await live.apply(log)  # the whole log again
        assert await dump(scratch_db, f"live_{name}") == await dump(scratch_db, f"clean_{name}"), name


async def test_registry_swaps_and_positions_round_trip(scratch_db: AsyncDatabase[dict[str, Any]]) -> None:
    registry = ProjectionRegistry(scratch_db, cache_seconds=0)
    assert await registry.live_collection("messages") == "rm_messages_g1"
    assert await registry.swap("messages", "rm_messages_g2", 2) == "rm_messages_g1"
    assert await registry.live_collection("messages") == "rm_messages_g2"
    positions = Positions(scratch_db)
    await positions.save("messages", "t", {0: 5, 1: 9})
    await positions.save("messages", "t", {1: 11})
    assert await positions.load("messages", "t") == {0: 5, 1: 11}


async def test_search_indexes_are_provisioned_behind_aliases(stack_settings: Settings) -> None:
    client = search_client(stack_settings)
    try:
        for name in MAPPINGS:
            assert await client.indices.exists_alias(name=alias_name(stack_settings, name)), name
    finally:
        await client.close()
