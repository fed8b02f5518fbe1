"""Elasticsearch indexes for the search projections: versioned indexes behind stable aliases.

A rebuild writes ``<prefix>-<name>-v<N+1>`` and moves the alias in one request, the same
swap-when-complete scheme as the MongoDB read models.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch

from infra.settings import Settings

_TEXT = {"type": "text"}
_KEYWORD = {"type": "keyword"}
_DATE = {"type": "date"}

MAPPINGS: dict[str, dict[str, Any]] = {
    "messages": {
        "properties": {
            "message_id": _KEYWORD,
            "conversation_id": _KEYWORD,
            "sender_id": _KEYWORD,
            "seq": {"type": "long"},
            "body": _TEXT,
            "sent_at": _DATE,
            "deleted": {"type": "boolean"},
        }
    },
    "conversations": {
        "properties": {
            "conversation_id": _KEYWORD,
            "kind": _KEYWORD,
            "title": _TEXT,
            "participant_ids": _KEYWORD,
        }
    },
    "users": {
        "properties": {
            "user_id": _KEYWORD,
            "username": {"type": "text", "fields": {"raw": _KEYWORD}},
            "display_name": _TEXT,
        }
    },
}


def alias_name(settings: Settings, name: str) -> str:
    return f"{settings.topic_prefix}-{name}"


def index_name(settings: Settings, name: str, generation: int) -> str:
    return f"{alias_name(settings, name)}-v{generation}"


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
