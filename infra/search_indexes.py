"""Elasticsearch indexes for the search projection: versioned indexes behind stable aliases.

Generation N of the projection is the three indexes ``<prefix>-<name>-v<N>`` (messages,
conversations, users); the aliases ``<prefix>-<name>`` name the live generation, and readers and
the live agent use only the aliases. A rebuild fills generation N+1 and moves the three aliases in
one request (``move_aliases``), the same swap-when-complete scheme as the MongoDB read models.
"""

from __future__ import annotations

import re
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError

from infra.settings import Settings
from projections.search import INDEXES, IndexName

_TEXT = {"type": "text"}
_KEYWORD = {"type": "keyword"}


def _returned_only(kind: str) -> dict[str, Any]:
    """A field that hits return (from ``_source``) but that no query searches, sorts or aggregates:
    neither indexed nor kept in doc values. Doc values of numbers and dates are the dearest part of
    indexing a message (measured: a long field's cost more than the whole body's analysis)."""
    return {"type": kind, "index": False, "doc_values": False}


# Which event wrote a document last (projections/search.py, ``to_source``): not searched.
_META = {
    "stream_id": _returned_only("keyword"),
    "stream_version": _returned_only("long"),
    "correlation_id": _returned_only("keyword"),
}

MAPPINGS: dict[str, dict[str, Any]] = {
    "messages": {
        "properties": {
            "message_id": _returned_only("keyword"),
            "conversation_id": _KEYWORD,  # the caller's conversations filter hits
            "sender_id": _KEYWORD,  # an erasure finds its messages
            "seq": _returned_only("long"),
            "body": _TEXT,
            "sent_at": _returned_only("date"),
            "deleted": {"type": "boolean"},
            **_META,
        }
    },
    "conversations": {
        "properties": {
            "conversation_id": _KEYWORD,
            "kind": _KEYWORD,
            "title": _TEXT,
            "participant_ids": _KEYWORD,
            **_META,
        }
    },
    "users": {
        "properties": {
            "user_id": _KEYWORD,
            "username": {"type": "text", "fields": {"raw": _KEYWORD}},
            "username_normalised": _KEYWORD,
            "display_name": _TEXT,
            **_META,
        }
    },
}


def alias_name(settings: Settings, name: str) -> str:
    return f"{settings.topic_prefix}-{name}"


def index_name(settings: Settings, name: str, generation: int) -> str:
    return f"{alias_name(settings, name)}-v{generation}"


def index_names(settings: Settings, generation: int) -> dict[IndexName, str]:
    return {name: index_name(settings, name, generation) for name in INDEXES}


def alias_names(settings: Settings) -> dict[IndexName, str]:
    return {name: alias_name(settings, name) for name in INDEXES}


def generation_label(settings: Settings, generation: int) -> str:
    """How status and the registry name a generation of the three indexes."""
    return f"{settings.topic_prefix}-*-v{generation}"


async def live_generation(client: AsyncElasticsearch, settings: Settings) -> int | None:
    """The generation the messages alias points at (None: no alias, e.g. a fresh in-memory server)."""
    try:
        found = await client.indices.get_alias(name=alias_name(settings, "messages"))
    except NotFoundError:
        return None
    pattern = re.compile(rf"^{re.escape(alias_name(settings, 'messages'))}-v(\d+)$")
    generations = [int(m.group(1)) for index in found.body for m in [pattern.match(index)] if m]
    return max(generations) if generations else None


async def generation_exists(client: AsyncElasticsearch, settings: Settings, generation: int) -> bool:
    """Whether every index of ``generation`` exists."""
    return bool(await client.indices.exists(index=",".join(index_names(settings, generation).values())))


async def create_generation(client: AsyncElasticsearch, settings: Settings, generation: int) -> dict[IndexName, str]:
    """Generation ``generation`` of the three indexes, empty (what a previous try left is dropped)."""
    names = index_names(settings, generation)
    for name, index in names.items():
        await client.indices.delete(index=index, ignore_unavailable=True)
        await client.indices.create(index=index, mappings=MAPPINGS[name])
    return names


async def move_aliases(client: AsyncElasticsearch, settings: Settings, generation: int) -> None:
    """Point the three aliases at ``generation`` in one request (readers move over atomically)."""
    actions: list[dict[str, Any]] = []
    for name in INDEXES:
        alias = alias_name(settings, name)
        actions.append({"remove": {"index": f"{alias}-v*", "alias": alias, "must_exist": False}})
        actions.append({"add": {"index": index_name(settings, name, generation), "alias": alias}})
    await client.indices.update_aliases(actions=actions)


async def drop_generations(client: AsyncElasticsearch, settings: Settings, keep: int) -> list[str]:
    """Delete every generation's indexes but ``keep``'s; returns the indexes deleted."""
    dropped: list[str] = []
    for name in INDEXES:
        pattern = re.compile(rf"^{re.escape(alias_name(settings, name))}-v(\d+)$")
        found = await client.indices.get(index=f"{alias_name(settings, name)}-v*", allow_no_indices=True)
        for index in found.body:
            m = pattern.match(index)
            if m and int(m.group(1)) != keep:
                await client.indices.delete(index=index, ignore_unavailable=True)
                dropped.append(index)
    return dropped


async def ensure_search_indexes(client: AsyncElasticsearch, settings: Settings) -> list[str]:
    """Create generation 1 of every search index with its alias, unless the alias exists. Idempotent."""
    created: list[str] = []
    for name, mapping in MAPPINGS.items():
        alias = alias_name(settings, name)
        if await client.indices.exists_alias(name=alias):
            continue
        index = index_name(settings, name, 1)
        if not await client.indices.exists(index=index):
            await client.indices.create(index=index, mappings=mapping)
            created.append(index)
        await client.indices.put_alias(index=index, name=alias)
    return created
