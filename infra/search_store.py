"""The search projection's store: Elasticsearch, written with external versioning.

``apply`` is the projection runner's ``Store``: it reads the documents a batch changes (one
``mget`` per index, skipped for documents the batch creates), folds the batch through the pure
projection (projections/search.py) and writes every change in ONE bulk request, each operation
at its document's stream version with ``version_type=external``. The index refuses an operation
whose version is not above the one it holds (409): that operation was applied already (a
redelivery, or the other writer while a rebuild catches up), so it counts as done. Other item
errors: 429, 5xx and a missing index are the index being unavailable (retried by the runner's
transient policy), anything else is the event's fault (``StoreRefused``: retried, then that event is parked).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from elasticsearch import ApiError, AsyncElasticsearch

from domain.envelope import EventEnvelope
from projections.base import Doc, Folded, OnEvent, first_touches, fold, to_look_up
from projections.runner import StoreRefused
from projections.search import (
    IndexName,
    IndexOp,
    SearchProjection,
    doc_key,
    from_source,
    index_ops,
    split_key,
    to_source,
)

log = logging.getLogger("parley.search")

VERSION_CONFLICT = 409
REDACT_PAGE = 1000
# What an erasure redacts: per index, the field naming the user and a field only unredacted documents have.
REDACTED: tuple[tuple[IndexName, str, str], ...] = (("messages", "sender_id", "body"), ("users", "user_id", "username"))
Refresh = bool | Literal["wait_for"]


class SearchUnavailable(Exception):
    """The index answered an item with 429 or 5xx: retry the batch later (not the event's fault)."""


class SearchStore:
    def __init__(
        self,
        client: AsyncElasticsearch,
        indexes: Mapping[IndexName, str],
        *,
        refresh: Refresh = True,
        aliases: bool = False,
    ) -> None:
        """``indexes`` names where each index's documents go: the aliases (live, ``aliases=True``) or
        one generation (a rebuild). ``refresh=True`` makes a bulk searchable when it returns (the live
        agent's ack-then-search promise); a rebuild refreshes once at the end instead. Through aliases,
        a write requires the alias: a missing one (a search server that lost everything) is the index
        unavailable until it is rebuilt, never a stray index created under the alias's name."""
        self.client = client
        self.indexes = dict(indexes)
        self.refresh = refresh
        self.aliases = aliases
        self.projection = SearchProjection()

    async def apply(self, events: Sequence[EventEnvelope], on_event: OnEvent | None = None) -> Folded:
        first = first_touches(self.projection, events)
        current: dict[str, Doc | None] = dict.fromkeys(first)
        current.update(await self._mget(to_look_up(self.projection, first, on_event)))
        folded = fold(self.projection, current, events, on_event)
        await self.write(index_ops(folded))
        return folded

    async def _mget(self, keys: Sequence[str]) -> dict[str, Doc | None]:
        by_index: dict[IndexName, list[str]] = {}
        for key in keys:
            index, doc_id = split_key(key)
            by_index.setdefault(index, []).append(doc_id)
        out: dict[str, Doc | None] = {}
        for index, ids in by_index.items():
            with refused_requests():
                found = await self.client.mget(index=self.indexes[index], ids=ids, realtime=True)
            for item in found.body.get("docs", []):
                if item.get("found"):
                    out[doc_key(index, str(item["_id"]))] = from_source(index, str(item["_id"]), item["_source"])
        return out

    async def write(self, ops: Sequence[IndexOp], version_type: str = "external") -> None:
        """One bulk request; see the module docstring for what its item errors mean."""
        if not ops:
            return
        operations: list[dict[str, Any]] = []
        for op in ops:
            meta = {"_index": self.indexes[op.index], "_id": op.doc_id, "version": op.version}
            operations.append({"index": {**meta, "version_type": version_type}})
            operations.append(op.source)
        with refused_requests():
            response = await self.client.bulk(
                operations=operations, refresh=self.refresh, require_alias=True if self.aliases else None
            )
        if not response.body.get("errors"):
            return
        unavailable: list[str] = []
        refused: list[str] = []
        for item in response.body.get("items", []):
            result = next(iter(item.values()))
            status = int(result.get("status", 200))
            if status < 300 or status == VERSION_CONFLICT:
                continue  # applied now, or already (an equal or newer version is there)
            reason = f"{result.get('_index')}/{result.get('_id')}: {status} {result.get('error')}"[:500]
            error_type = (result.get("error") or {}).get("type") if isinstance(result.get("error"), dict) else None
            missing = status == 404 and error_type == "index_not_found_exception"
            (unavailable if status == 429 or status >= 500 or missing else refused).append(reason)
        if unavailable:
            raise SearchUnavailable(f"{len(unavailable)} bulk items not applied: {unavailable[0]}")
        if refused:
            raise StoreRefused(f"{len(refused)} bulk items refused: {refused[0]}")

    async def redact(self, user_id: str) -> int:
        """Redact ``user_id``'s messages and users document in every index (crypto-shredding).

        Written at the version each document is at (``external_gte``), so a newer write in between
        wins and the document keeps its stream version for the events still to come. Pages through
        what still holds data (a redacted document no longer matches)."""
        changed = 0
        for name, field, probe in REDACTED:
            query = {"bool": {"filter": [{"term": {field: user_id}}, {"exists": {"field": probe}}]}}
            while True:
                with refused_requests():
                    found = await self.client.search(
                        index=self.indexes[name], query=query, size=REDACT_PAGE, version=True
                    )
                hits = found.body["hits"]["hits"]
                ops: list[IndexOp] = []
                for hit in hits:
                    doc = from_source(name, str(hit["_id"]), hit["_source"])
                    new = self.projection.redact(doc, user_id)
                    if new != doc:
                        ops.append(IndexOp(name, str(hit["_id"]), int(hit["_version"]), to_source(new)))
                await self.write(ops, version_type="external_gte")
                if not self.refresh:
                    await self.refresh_now()
                changed += len(ops)
                if len(hits) < REDACT_PAGE or not ops:
                    break
        return changed

    async def refresh_now(self) -> None:
        await self.client.indices.refresh(index=",".join(self.indexes.values()))


@contextlib.contextmanager
def refused_requests() -> Iterator[None]:
    """A request the index refuses as malformed (400, 413) is the events' fault: ``StoreRefused``.
    Anything else (connection errors, 5xx) passes through as an unavailable store."""
    try:
        yield
    except ApiError as exc:
        if exc.meta.status in (400, 413):
            raise StoreRefused(repr(exc)) from exc
        raise
