"""The search adapters against the session's real servers: the index and cache contracts, the
search store's versioned bulk writes, and a generation swap behind the aliases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from infra.redis_client import redis_client
from infra.search_cache import RedisSearchCache
from infra.search_client import search_client
from infra.search_index import ElasticsearchIndex
from infra.search_indexes import (
    alias_names,
    create_generation,
    ensure_search_indexes,
    live_generation,
    move_aliases,
)
from infra.search_store import SearchStore, SearchUnavailable
from infra.settings import Settings
from projections.runner import StoreRefused
from projections.search import IndexOp
from tests.contracts.search_cache import SearchCacheContract
from tests.contracts.search_index import SearchIndexContract, Write
from tests.unit.app.scenario import USERS, Scenario

pytestmark = pytest.mark.integration

A, B, C, _ = USERS


@pytest.fixture
async def es(stack_settings: Settings) -> AsyncIterator[AsyncElasticsearch]:
    client = search_client(stack_settings)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def scratch(stack_settings: Settings, es: AsyncElasticsearch) -> AsyncIterator[Settings]:
    """Settings with a prefix of their own, whose generation 1 of the indexes exists behind its aliases."""
    settings = stack_settings.model_copy(update={"topic_prefix": f"it-search-{uuid.uuid4().hex[:8]}"})
    await ensure_search_indexes(es, settings)
    try:
        yield settings
    finally:
        await es.indices.delete(index=f"{settings.topic_prefix}-*", ignore_unavailable=True)


class TestElasticsearchIndex(SearchIndexContract):
    @pytest.fixture
    def index(self, es: AsyncElasticsearch, scratch: Settings) -> ElasticsearchIndex:
        return ElasticsearchIndex(es, alias_names(scratch))

    @pytest.fixture
    def write(self, es: AsyncElasticsearch, scratch: Settings) -> Write:
        store = SearchStore(es, alias_names(scratch), aliases=True)

        async def write(ops: Sequence[IndexOp]) -> None:
            await store.write(ops)

        return write


class TestRedisSearchCache(SearchCacheContract):
    @pytest.fixture
    async def cache(self, stack_settings: Settings) -> AsyncIterator[RedisSearchCache]:
        client: Redis = redis_client(stack_settings)
        try:
            yield RedisSearchCache(client)
        finally:
            await client.aclose()


async def test_the_store_applies_batches_idempotently(es: AsyncElasticsearch, scratch: Settings) -> None:
    s = Scenario()
    s.register(A, "alice")
    group = s.create_group(A, [B, C], "Weekly planning")
    mid = s.on(group, "message:send", B, body="draft the roadmap").outcome.data["message_id"]
    s.on(group, "message:edit", B, message_id=mid, body="finalise the roadmap")
    store = SearchStore(es, alias_names(scratch))
    index = ElasticsearchIndex(es, alias_names(scratch))
    await store.apply(s.log)
    # Redelivered: whole, in pieces, and the creating event alone (no lookup: the index refuses it).
    await store.apply(s.log)
    for event in s.log:
        await store.apply([event])
    await store.apply(s.log[2:3])
    (hit,) = await index.messages("roadmap", [group], 10)
    assert hit["message_id"] == mid and "finalise" in hit["snippet"]
    assert await index.messages("draft", [group], 10) == []
    assert [h["title"] for h in await index.conversations("planning", [group], 10)] == ["Weekly planning"]
    s.on(group, "message:delete", B, message_id=mid)
    await store.apply(s.log[-1:])
    await store.apply(s.log)  # the send and the edit again, after the delete
    assert await index.messages("roadmap", [group], 10) == []
    got = await es.get(index=alias_names(scratch)["messages"], id=mid)
    assert got.body["_source"]["deleted"] is True and got.body["_version"] == len(s.log) - 1


async def test_an_item_the_index_refuses_is_store_refused(es: AsyncElasticsearch, scratch: Settings) -> None:
    store = SearchStore(es, alias_names(scratch))
    bad = IndexOp("messages", str(uuid.uuid4()), 2, {"seq": "not a number", "deleted": False})
    with pytest.raises(StoreRefused):
        await store.write([bad])


async def test_aliases_move_to_a_new_generation_in_one_request(es: AsyncElasticsearch, scratch: Settings) -> None:
    assert await live_generation(es, scratch) == 1
    targets = await create_generation(es, scratch, 2)
    s = Scenario()
    group = s.create_group(A, [B], "Generation two")
    await SearchStore(es, targets).apply(s.log)
    index = ElasticsearchIndex(es, alias_names(scratch))
    assert await index.conversations("generation", [group], 10) == []  # still generation 1
    await move_aliases(es, scratch, 2)
    assert await live_generation(es, scratch) == 2
    assert [h["conversation_id"] for h in await index.conversations("generation", [group], 10)] == [group]


async def test_writes_through_a_missing_alias_wait_for_it(es: AsyncElasticsearch, scratch: Settings) -> None:
    """A search server that lost its indexes: the live store's writes are the index unavailable
    (retried until a rebuild brings them back), and no index is created under an alias's name."""
    gone = scratch.model_copy(update={"topic_prefix": f"{scratch.topic_prefix}-gone"})
    s = Scenario()
    s.create_group(A, [B], "nowhere")
    with pytest.raises(SearchUnavailable):
        await SearchStore(es, alias_names(gone), aliases=True).apply(s.log)
    assert not await es.indices.exists(index=alias_names(gone)["conversations"])
