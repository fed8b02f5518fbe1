"""Conversation commands and the ``conversation:list`` query."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.services import GatewayServices
from api.socket.acks import AckError, parse_payload
from api.socket.commands import CommandHandlers, create_aggregate
from api.socket.events import EventContext, EventRunner
from domain.envelope import iso

COMMANDS = (
    "conversation:add-participants",
    "conversation:remove-participant",
    "conversation:leave",
    "conversation:rename",
)


class ListConversations(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    limit: int = Field(default=50, ge=1, le=100)
    before: str | None = Field(default=None, min_length=1, max_length=160)


def activity_cursor(before: str) -> tuple[str, str | None]:
    """``before`` as (time, tie-breaking conversation id): an item's ``cursor`` ("<time>|<id>"), or
    an ISO time, put in the form the read model writes (UTC, milliseconds, Z) so strings compare."""
    moment_text, _, conversation_id = before.partition("|")
    try:
        moment = datetime.fromisoformat(moment_text)
    except ValueError:
        raise AckError("invalid", "before: must be an ISO-8601 time or an item's cursor") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment), (conversation_id or None)


def register(runner: EventRunner, commands: CommandHandlers, services: GatewayServices) -> None:
    commands.register("conversation:create", aggregate_of=create_aggregate, user_fields=("participant_ids",))
    commands.register("conversation:add-participants", user_fields=("user_ids",))
    for event in COMMANDS[1:]:
        commands.register(event)

    async def list_conversations(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        query = parse_payload(ListConversations, raw)
        before, before_id = activity_cursor(query.before) if query.before is not None else (None, None)
        async with asyncio.timeout(services.settings.query_timeout_s):
            items = await services.read_models.list_conversations(ctx.user_id, query.limit, before, before_id)
        return {"conversations": items}

    runner.on("conversation:list", list_conversations, kind="query")
