"""The gateway's search index (api/search.py, ``SearchIndex``): Elasticsearch, and an in-memory fake.

Queries go through the aliases (infra/search_indexes.py), so a rebuilt generation is searched as
soon as its aliases move. Every query filters on the caller's conversations (a terms filter) and,
for messages, on ``deleted: false`` (deletes are soft, see projections/search.py). Snippets are
the index's highlight of the body, HTML-escaped, with the matches in ``<em>``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from elasticsearch import ApiError as ElasticsearchApiError
from elasticsearch import AsyncElasticsearch, TransportError

from projections.search import IndexName, IndexOp, final_index

Hit = dict[str, Any]


class SearchUnavailable(Exception):
    """The index cannot answer now (down, timed out): the client may retry."""


SNIPPET_CHARS = 160
USER_FIELDS = ["username", "display_name"]


class ElasticsearchIndex:
    def __init__(self, client: AsyncElasticsearch, aliases: Mapping[IndexName, str]) -> None:
        self.client = client
        self.aliases = dict(aliases)

    async def _search(self, index: IndexName, body: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            response = await self.client.search(index=self.aliases[index], **body)
        except (TransportError, ElasticsearchApiError) as exc:
            raise SearchUnavailable(f"search {index}: {exc!r}"[:300]) from exc
        hits: list[dict[str, Any]] = response.body["hits"]["hits"]
        return hits

    async def messages(self, query: str, conversation_ids: Sequence[str], limit: int) -> list[Hit]:
        found = await self._search(
            "messages",
            {
                "query": {
                    "bool": {
                        "must": [{"match": {"body": {"query": query, "operator": "and"}}}],
                        "filter": [
                            {"terms": {"conversation_id": list(conversation_ids)}},
                            {"term": {"deleted": False}},
                        ],
                    }
                },
                "highlight": {
                    "encoder": "html",
                    "pre_tags": ["<em>"],
                    "post_tags": ["</em>"],
                    "fields": {"body": {"fragment_size": SNIPPET_CHARS, "number_of_fragments": 1}},
                },
                "size": limit,
            },
        )
        out: list[Hit] = []
        for hit in found:
            source = hit["_source"]
            fragments = (hit.get("highlight") or {}).get("body") or []
            out.append(
                {
                    "message_id": source["message_id"],
                    "conversation_id": source["conversation_id"],
                    "seq": source["seq"],
                    "sender_id": source["sender_id"],
                    "snippet": fragments[0]
                    if fragments
                    else html.escape(str(source.get("body") or "")[:SNIPPET_CHARS]),
                    "sent_at": source["sent_at"],
                }
            )
        return out

    async def conversations(self, query: str, conversation_ids: Sequence[str], limit: int) -> list[Hit]:
        found = await self._search(
            "conversations",
            {
                "query": {
                    "bool": {
                        "must": [{"match": {"title": {"query": query, "operator": "and"}}}],
                        "filter": [{"terms": {"conversation_id": list(conversation_ids)}}],
                    }
                },
                "size": limit,
            },
        )
        return [{k: hit["_source"].get(k) for k in ("conversation_id", "title", "kind")} for hit in found]

    async def users(self, query: str, limit: int) -> list[Hit]:
        found = await self._search(
            "users",
            {
                "query": {
                    "bool": {
                        "should": [
                            {
                                "multi_match": {
                                    "query": query,
                                    "fields": ["username", "display_name"],
                                    "operator": "and",
                                }
                            },
                            {"prefix": {"username_normalised": query.lower()}},
                        ],
                        "minimum_should_match": 1,
                    }
                },
                "size": limit,
            },
        )
        return [{k: hit["_source"].get(k) for k in ("user_id", "username", "display_name")} for hit in found]

    async def users_count(self) -> int:
        try:
            counted = await self.client.count(index=self.aliases["users"])
        except (TransportError, ElasticsearchApiError) as exc:
            raise SearchUnavailable(f"count users: {exc!r}"[:300]) from exc
        return int(counted.body["count"])


_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str | None) -> list[str]:
    return [w.lower() for w in _WORD.findall(text or "")]


def _matches(query: str, *texts: str | None) -> bool:
    wanted = set(_words(query))
    return bool(wanted) and any(wanted <= set(_words(text)) for text in texts)


def _highlight(body: str, query: str) -> str:
    wanted = set(_words(query))
    out: list[str] = []
    last = 0
    for m in _WORD.finditer(body):
        if m.group(0).lower() in wanted:
            out.append(html.escape(body[last : m.start()]))
            out.append(f"<em>{html.escape(m.group(0))}</em>")
            last = m.end()
    out.append(html.escape(body[last:]))
    return "".join(out)[: SNIPPET_CHARS * 2]


class InMemorySearchIndex:
    """The fake for unit tests: documents written as the search store writes them (``write``, with
    the same external versioning), queried with the same semantics, roughly (every query word
    must appear, case-insensitively)."""

    def __init__(self) -> None:
        self.docs: dict[tuple[IndexName, str], tuple[int, dict[str, Any]]] = {}

    async def write(self, ops: Iterable[IndexOp]) -> None:
        held = [IndexOp(index, doc_id, version, source) for (index, doc_id), (version, source) in self.docs.items()]
        self.docs = final_index([*held, *ops])

    def _sources(self, index: IndexName) -> list[dict[str, Any]]:
        return [source for (name, _), (_, source) in sorted(self.docs.items()) if name == index]

    async def messages(self, query: str, conversation_ids: Sequence[str], limit: int) -> list[Hit]:
        scope = set(conversation_ids)
        found = [
            s
            for s in self._sources("messages")
            if s["conversation_id"] in scope and not s["deleted"] and _matches(query, s["body"])
        ]
        return [
            {
                "message_id": s["message_id"],
                "conversation_id": s["conversation_id"],
                "seq": s["seq"],
                "sender_id": s["sender_id"],
                "snippet": _highlight(str(s["body"]), query),
                "sent_at": s["sent_at"],
            }
            for s in found[:limit]
        ]

    async def conversations(self, query: str, conversation_ids: Sequence[str], limit: int) -> list[Hit]:
        scope = set(conversation_ids)
        found = [
            s for s in self._sources("conversations") if s["conversation_id"] in scope and _matches(query, s["title"])
        ]
        return [{k: s.get(k) for k in ("conversation_id", "title", "kind")} for s in found[:limit]]

    async def users(self, query: str, limit: int) -> list[Hit]:
        prefix = query.lower()
        found = [
            s
            for s in self._sources("users")
            if _matches(query, s["username"], s["display_name"]) or str(s["username_normalised"]).startswith(prefix)
        ]
        return [{k: s.get(k) for k in ("user_id", "username", "display_name")} for s in found[:limit]]

    async def users_count(self) -> int:
        return len(self._sources("users"))
