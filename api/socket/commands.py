"""Socket events that are commands: payload -> the "send a command" use case -> ack.

The control fields (``command_id``, ``expected_version``, ``correlation_id``) are taken out of
the payload, the rest is validated by the domain's payload model for the event, the aggregate
(stream) id is derived, and ``api.send_command`` does the rest: the outcome of the worker's
decision becomes the ack, after the read models show the version it reports.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.send_command import Command, CommandRefused, Visible
from api.services import GatewayServices
from api.socket.acks import AckError, parse_payload
from api.socket.events import EventContext, EventRunner
from domain.conversation import conversation_id_of, conversation_in, conversation_stream_id, create_target_stream
from domain.decider import COMMAND_PAYLOADS
from infra.mongo.read_models import ReadModels

CONTROL_FIELDS = ("command_id", "expected_version", "correlation_id")
MAX_EXPECTED_VERSION = 2**63 - 1

AggregateOf = Callable[[str, str, dict[str, Any]], str]  # (actor_id, command_id, payload) -> stream id


@dataclass(frozen=True)
class CommandParts:
    command_id: str
    expected_version: int | None
    payload: dict[str, Any]  # what is left once the control fields are taken out


def split_control_fields(raw: dict[str, Any]) -> CommandParts:
    """Take ``command_id`` (a UUID, made when absent), ``expected_version`` (int >= 0 or absent)
    and ``correlation_id`` out of a command payload; an ``invalid`` AckError when malformed."""
    command_id = raw.get("command_id")
    if command_id is None:
        command_id = str(uuid.uuid4())
    else:
        command_id = canonical_uuid(command_id)
        if command_id is None:
            raise AckError("invalid", "command_id: must be a UUID string")
    expected = raw.get("expected_version")
    if expected is not None and (type(expected) is not int or not 0 <= expected <= MAX_EXPECTED_VERSION):
        raise AckError("invalid", "expected_version: must be an integer >= 0")
    rest = {k: v for k, v in raw.items() if k not in CONTROL_FIELDS}
    return CommandParts(command_id=command_id, expected_version=expected, payload=rest)


def canonical_uuid(value: object) -> str | None:
    """The canonical text of a UUID given as a string, or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


class ConversationPayload(BaseModel):
    """A query or signal about one conversation; its id in the canonical form commands use."""

    model_config = ConfigDict(extra="ignore", strict=True)

    conversation_id: str = Field(min_length=1, max_length=64)

    @field_validator("conversation_id")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return canonical_uuid(value) or value


def conversation_aggregate(actor_id: str, command_id: str, payload: dict[str, Any]) -> str:
    """The stream of a command on an existing conversation. Its ``conversation_id`` must be a UUID
    and is put in canonical form in ``payload`` (the worker compares it with the stream's)."""
    conversation_id = canonical_uuid(payload.get("conversation_id"))
    if conversation_id is None:
        raise AckError("invalid", "conversation_id: must be a UUID string")
    payload["conversation_id"] = conversation_id
    return conversation_stream_id(conversation_id)


def create_aggregate(actor_id: str, command_id: str, payload: dict[str, Any]) -> str:
    return create_target_stream(actor_id, command_id, payload)


def _conversation_shows_in(read_models: ReadModels) -> Visible:
    async def shows(stream_id: str, version: int) -> bool:
        # The conversations projection is applied after the others in every batch, so a conversation
        # view at `version` vouches for the message and the rest of what that version changed.
        return await read_models.conversation_caught_up(conversation_id_of(stream_id), version)

    return shows


class CommandHandlers:
    """Builds the handler of each command event and registers it with the runner."""

    def __init__(self, runner: EventRunner, services: GatewayServices) -> None:
        self._runner = runner
        self._services = services
        self._conversation_shows = _conversation_shows_in(services.read_models)

    def register(
        self,
        event: str,
        aggregate_of: AggregateOf = conversation_aggregate,
        user_fields: tuple[str, ...] = (),
        visible: Visible | None = None,
    ) -> None:
        """``user_fields``: payload fields listing user ids that must all be registered users.
        ``visible``: how the read models show an outcome of a stream that is not a conversation."""

        async def handle(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
            return await self.execute(ctx, raw, aggregate_of, user_fields, visible)

        self._runner.on(event, handle, kind="command")

    async def execute(
        self,
        ctx: EventContext,
        raw: dict[str, Any],
        aggregate_of: AggregateOf,
        user_fields: tuple[str, ...],
        visible: Visible | None = None,
    ) -> dict[str, Any]:
        services = self._services
        settings = services.settings
        parts = split_control_fields(raw)
        ctx.command_id = parts.command_id
        model = COMMAND_PAYLOADS[ctx.event]
        payload = parse_payload(model, parts.payload).model_dump(mode="json")
        ctx.aggregate_id = aggregate_of(ctx.user_id, parts.command_id, payload)
        others = [u for field in user_fields for u in payload.get(field) or [] if u != ctx.user_id]
        if others:
            async with asyncio.timeout(settings.query_timeout_s):
                missing = await services.read_models.missing_users(others)
            if missing:
                raise AckError("not_found", "user not found")
        command = Command(
            type=ctx.event,
            aggregate_id=ctx.aggregate_id,
            actor_id=ctx.user_id,
            correlation_id=ctx.correlation_id,
            payload=payload,
            command_id=parts.command_id,
            expected_version=parts.expected_version,
        )
        if conversation_in(ctx.aggregate_id):
            visible = self._conversation_shows
        try:
            return await services.send(command, visible)
        except CommandRefused as refused:
            raise AckError(refused.code, refused.message, stage="domain") from None
