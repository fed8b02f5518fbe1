"""``search:messages``, ``search:conversations`` and ``search:users``: queries (rate class ``search``)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.search import NotVisible, SearchUnavailable
from api.services import GatewayServices
from api.socket.acks import AckError, parse_payload
from api.socket.events import EventContext, EventRunner

MAX_QUERY_CHARS = 256
MAX_LIMIT = 50
DEFAULT_LIMIT = 20


class SearchPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)

    def text(self) -> str:
        if not self.query.strip():
            raise AckError("invalid", "query: must contain a word")
        return self.query


class SearchMessagesPayload(SearchPayload):
    conversation_id: str | None = Field(default=None, min_length=1, max_length=128)


def register(runner: EventRunner, services: GatewayServices) -> None:
    queries = services.search_queries
    timeout_s = services.settings.query_timeout_s

    async def messages(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        p = parse_payload(SearchMessagesPayload, raw)
        try:
            async with asyncio.timeout(timeout_s):
                hits = await queries.messages(ctx.user_id, p.text(), p.conversation_id, p.limit)
        except NotVisible:
            raise AckError("not_found", "conversation not found") from None
        except SearchUnavailable:
            raise AckError("unavailable", "search is unavailable, try again") from None
        return {"hits": hits}

    async def conversations(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        p = parse_payload(SearchPayload, raw)
        try:
            async with asyncio.timeout(timeout_s):
                hits = await queries.conversations(ctx.user_id, p.text(), p.limit)
        except SearchUnavailable:
            raise AckError("unavailable", "search is unavailable, try again") from None
        return {"hits": hits}

    async def users(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        p = parse_payload(SearchPayload, raw)
        try:
            async with asyncio.timeout(timeout_s):
                hits = await queries.users(p.text(), p.limit)
        except SearchUnavailable:
            raise AckError("unavailable", "search is unavailable, try again") from None
        return {"hits": hits}

    # Registered as queries; api/rate_limits.py counts every `search:*` event in the `search` class.
    runner.on("search:messages", messages, kind="query")
    runner.on("search:conversations", conversations, kind="query")
    runner.on("search:users", users, kind="query")
