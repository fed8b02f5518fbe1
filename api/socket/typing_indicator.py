"""``typing``: an ephemeral signal relayed to the other current participants, never stored."""

from __future__ import annotations

import asyncio
from typing import Any

from api.services import GatewayServices
from api.socket.acks import AckError, parse_payload
from api.socket.commands import ConversationPayload
from api.socket.events import EventContext, EventRunner
from api.socket.rooms import user_room


class Typing(ConversationPayload):
    on: bool


def register(runner: EventRunner, services: GatewayServices) -> None:
    async def typing(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        signal = parse_payload(Typing, raw)
        async with asyncio.timeout(services.settings.query_timeout_s):
            conversation = await services.read_models.conversation_of_participant(signal.conversation_id, ctx.user_id)
        if conversation is None:
            raise AckError("not_found", "conversation not found")
        rooms = [user_room(uid) for uid in conversation.get("participant_ids", []) if uid != ctx.user_id]
        if rooms:
            # Through the Redis manager: every gateway delivers to its own sockets of these users.
            await runner.sio.emit(
                "typing",
                {"conversation_id": signal.conversation_id, "user_id": ctx.user_id, "on": signal.on},
                to=rooms,
                skip_sid=ctx.sid,
            )
        return {}

    runner.on("typing", typing, kind="ephemeral")
