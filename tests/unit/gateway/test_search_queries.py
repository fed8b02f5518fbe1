"""The search use case (api/search.py) on the in-memory fakes: scope, no existence leak, cache keys."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from api.search import NotVisible, SearchQueries, cache_key
from infra.search_cache import InMemorySearchCache
from infra.search_index import InMemorySearchIndex
from tests.contracts.search_index import message, user


class Memberships:
    def __init__(self) -> None:
        self.versions: dict[str, dict[str, int]] = {}

    async def conversation_versions(self, user_id: str) -> dict[str, int]:
        return dict(self.versions.get(user_id, {}))


class CountingIndex(InMemorySearchIndex):
    def __init__(self) -> None:
        super().__init__()
        self.searches = 0

    async def messages(self, query: str, conversation_ids: Any, limit: int) -> list[dict[str, Any]]:
        self.searches += 1
        return await super().messages(query, conversation_ids, limit)


class BrokenCache:
    async def get(self, key: str) -> dict[str, Any] | None:
        raise ConnectionError("redis is down")

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        raise ConnectionError("redis is down")


@pytest.fixture
def parts() -> tuple[CountingIndex, Memberships, SearchQueries]:
    index, members = CountingIndex(), Memberships()
    return index, members, SearchQueries(index, InMemorySearchCache(), members, namespace="t:search")


async def test_results_come_only_from_the_callers_current_conversations(
    parts: tuple[CountingIndex, Memberships, SearchQueries],
) -> None:
    index, members, queries = parts
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    await index.write([message(mine, "shared word here"), message(theirs, "shared word there")])
    members.versions = {"u": {mine: 3}, "v": {theirs: 2}}
    assert [h["conversation_id"] for h in await queries.messages("u", "shared", None, 10)] == [mine]
    assert [h["conversation_id"] for h in await queries.messages("u", "shared", mine, 10)] == [mine]
    with pytest.raises(NotVisible):
        await queries.messages("u", "shared", theirs, 10)
    with pytest.raises(NotVisible):
        await queries.messages("u", "shared", str(uuid.uuid4()), 10)
    assert await queries.messages("nobody", "shared", None, 10) == []


async def test_the_cache_answers_until_a_version_moves_or_the_membership_changes(
    parts: tuple[CountingIndex, Memberships, SearchQueries],
) -> None:
    index, members, queries = parts
    conv = str(uuid.uuid4())
    await index.write([message(conv, "cached words")])
    members.versions = {"u": {conv: 2}}
    first = await queries.messages("u", "cached", None, 10)
    assert await queries.messages("u", "  cached ", None, 10) == first  # the same normalised query
    assert index.searches == 1
    newer = message(conv, "cached words again", version=3, seq=2)
    await index.write([newer])
    members.versions = {"u": {conv: 3}}  # the conversation view moved with the new message
    assert len(await queries.messages("u", "cached", None, 10)) == 2
    assert index.searches == 2
    members.versions = {"u": {}}  # removed: nothing, and no cached answer
    assert await queries.messages("u", "cached", None, 10) == []


async def test_users_are_cached_until_someone_registers(
    parts: tuple[CountingIndex, Memberships, SearchQueries],
) -> None:
    index, _, queries = parts
    await index.write([user("grace", "Grace Hopper")])
    assert [h["username"] for h in await queries.users("gra", 10)] == ["grace"]
    await index.write([user("graham", "Graham")])
    assert sorted(h["username"] for h in await queries.users("gra", 10)) == ["grace", "graham"]


async def test_a_broken_cache_is_skipped(parts: tuple[CountingIndex, Memberships, SearchQueries]) -> None:
    index, members, _ = parts
    queries = SearchQueries(index, BrokenCache(), members, namespace="t:search")
    conv = str(uuid.uuid4())
    await index.write([message(conv, "still searchable")])
    members.versions = {"u": {conv: 2}}
    assert len(await queries.messages("u", "searchable", None, 10)) == 1


def test_cache_keys_hide_the_query_and_differ_by_user_and_scope() -> None:
    key = cache_key("p:search", "user-1", "messages", {"query": "my secret"}, [["c", 1]])
    assert key.startswith("p:search:") and "secret" not in key and "user-1" not in key
    assert key != cache_key("p:search", "user-2", "messages", {"query": "my secret"}, [["c", 1]])
    assert key != cache_key("p:search", "user-1", "messages", {"query": "my secret"}, [["c", 2]])
    assert key == cache_key("p:search", "user-1", "messages", {"query": "my secret"}, [["c", 1]])
