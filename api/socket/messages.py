"""Message commands and the ``message:history`` query."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from api.services import GatewayServices
from api.socket.acks import AckError, parse_payload
from api.socket.commands import CommandHandlers, ConversationPayload
from api.socket.events import EventContext, EventRunner

COMMANDS = ("message:send", "message:edit", "message:delete", "message:react", "message:read")


class MessageHistory(ConversationPayload):
    before_seq: int | None = Field(default=None, ge=0)
    limit: int = Field(default=50, ge=1, le=100)


def register(runner: EventRunner, commands: CommandHandlers, services: GatewayServices) -> None:
    for event in COMMANDS:
        commands.register(event)

    async def history(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        query = parse_payload(MessageHistory, raw)
        read_models = services.read_models
        async with asyncio.timeout(services.settings.query_timeout_s):
            if await read_models.conversation_of_participant(query.conversation_id, ctx.user_id) is None:
                raise AckError("not_found", "conversation not found")
            page = await read_models.history(query.conversation_id, query.before_seq, query.limit)
        return {"messages": page.messages, "has_more": page.has_more}

    runner.on("message:history", history, kind="query")
