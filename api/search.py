"""The search use case behind ``search:*``, with its ports: the index, the cache and the memberships.

Scope: a search sees only the conversations the caller is a participant of NOW, read from the
conversations read model at query time and passed to the index as a filter. A conversation the
caller is not in, or that does not exist, is ``NotVisible`` alike (no existence leak).

Cache (60 s): the key is a hash of the user, the operation, the normalised parameters and the
sorted (conversation_id, version) pairs of the caller's conversations in scope. Every membership
change, new message, edit or delete is an event of the conversation's stream and moves its version,
so it changes the key; a removed participant's list no longer holds the conversation. Per batch
the worker applies the search indexes before the conversations view (streams/runtime.py), so a
conversation at version V in the read model implies the index holds V: a result cached under a
key is never older than the versions in that key. ``search:users`` is not per user (every user
may find every user): its key holds the number of documents in the users index instead, which
only registrations change (a user document is never edited or removed), counted in the index
itself so that no count can run ahead of it. A cache that fails (Redis down) is skipped with a
warning: search works uncached.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from infra.search_index import SearchUnavailable as SearchUnavailable  # what SearchIndex raises

log = logging.getLogger("parley.gateway.search")

T = TypeVar("T")
Hit = dict[str, Any]

CACHE_TTL_S = 60.0
CACHE_TIMEOUT_S = 0.25  # a slow cache costs at most this, then the search runs uncached


class NotVisible(Exception):
    """The conversation does not exist or the caller is not a participant of it."""


class SearchIndex(Protocol):
    """Full-text queries over the search projection's indexes (infra/search_index.py)."""

    async def messages(self, query: str, conversation_ids: Sequence[str], limit: int) -> list[Hit]:
        """``[{message_id, conversation_id, seq, sender_id, snippet, sent_at}]``: messages not deleted, of
        those conversations, matching every word of ``query``; ``snippet`` is HTML-escaped text with the
        matches in ``<em>``."""
        ...

    async def conversations(self, query: str, conversation_ids: Sequence[str], limit: int) -> list[Hit]:
        """``[{conversation_id, title, kind}]`` of those conversations whose title matches ``query``."""
        ...

    async def users(self, query: str, limit: int) -> list[Hit]:
        """``[{user_id, username, display_name}]`` whose username or display name matches ``query``
        (or whose username starts with it)."""
        ...

    async def users_count(self) -> int:
        """How many user documents the index holds (the users cache key)."""
        ...


class SearchCache(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None: ...


class Memberships(Protocol):
    async def conversation_versions(self, user_id: str) -> dict[str, int]:
        """The caller's current conversations, each with its stream version in the read model."""
        ...


def normalise_query(query: str) -> str:
    """What the index sees of a query: surrounding space removed, inner runs of space as one."""
    return " ".join(query.split())


def cache_key(namespace: str, user_id: str | None, operation: str, params: Mapping[str, Any], scope: Any) -> str:
    """The cache key: a hash, so that no query text or user id is in clear in Redis."""
    material = json.dumps([user_id, operation, dict(sorted(params.items())), scope], separators=(",", ":"))
    return f"{namespace}:{hashlib.sha256(material.encode('utf-8', 'surrogatepass')).hexdigest()}"


@dataclass
class SearchQueries:
    index: SearchIndex
    cache: SearchCache
    memberships: Memberships
    namespace: str  # the Redis key prefix, e.g. "parley:search"
    ttl_s: float = CACHE_TTL_S

    async def messages(self, user_id: str, query: str, conversation_id: str | None, limit: int) -> list[Hit]:
        versions = await self.memberships.conversation_versions(user_id)
        if conversation_id is not None:
            if conversation_id not in versions:
                raise NotVisible(conversation_id)
            versions = {conversation_id: versions[conversation_id]}
        if not versions:
            return []
        text = normalise_query(query)
        scope = sorted(versions.items())
        params = {"query": text, "conversation_id": conversation_id, "limit": limit}
        key = cache_key(self.namespace, user_id, "messages", params, scope)
        return await self._cached(key, lambda: self.index.messages(text, list(versions), limit))

    async def conversations(self, user_id: str, query: str, limit: int) -> list[Hit]:
        versions = await self.memberships.conversation_versions(user_id)
        if not versions:
            return []
        text = normalise_query(query)
        key = cache_key(
            self.namespace, user_id, "conversations", {"query": text, "limit": limit}, sorted(versions.items())
        )
        return await self._cached(key, lambda: self.index.conversations(text, list(versions), limit))

    async def users(self, query: str, limit: int) -> list[Hit]:
        text = normalise_query(query)
        count = await self.index.users_count()
        key = cache_key(self.namespace, None, "users", {"query": text, "limit": limit}, count)
        return await self._cached(key, lambda: self.index.users(text, limit))

    async def _cached(self, key: str, search: Callable[[], Awaitable[list[Hit]]]) -> list[Hit]:
        found = await self._cache_call(self.cache.get(key))
        if isinstance(found, dict) and isinstance(found.get("hits"), list):
            return list(found["hits"])
        hits = await search()
        await self._cache_call(self.cache.put(key, {"hits": hits}, self.ttl_s))
        return hits

    async def _cache_call(self, call: Awaitable[T]) -> T | None:
        try:
            async with asyncio.timeout(CACHE_TIMEOUT_S):
                return await call
        except Exception as exc:  # the cache is an optimisation: search works without it
            log.warning("search cache unavailable, answering uncached: %r", exc)
            return None
