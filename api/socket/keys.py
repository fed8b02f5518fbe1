"""The end-to-end encryption key directory: ``keys:publish``, ``keys:replenish`` and ``keys:bundle``
(commands of the ``keys:<user_id>`` aggregate) and the ``keys:devices`` query.

``keys:bundle`` is a command, not a query: the single writer of the user's keys stream hands each
one-time prekey out at most once (``domain.keys``). The gateway checks what needs a lookup or a
cryptography library before sending: the signed prekey's signature (``api.key_directory``) and that
a bundle's user is registered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.key_directory import signed_prekey_is_valid
from api.send_command import Visible
from api.services import GatewayServices
from api.socket.acks import AckError, parse_payload
from api.socket.commands import CommandHandlers, split_control_fields
from api.socket.events import EventContext, EventRunner
from domain.catalog import parse_command
from domain.keys import FetchBundle, PublishKeys, keys_stream_id, user_id_of
from infra.mongo.read_models import ReadModels


class DevicesQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    user_id: str = Field(min_length=1, max_length=64)


def own_keys(actor_id: str, command_id: str, payload: dict[str, Any]) -> str:
    return keys_stream_id(actor_id)


def bundle_keys(actor_id: str, command_id: str, payload: dict[str, Any]) -> str:
    return keys_stream_id(str(payload["user_id"]))


def _keys_show_in(read_models: ReadModels) -> Visible:
    async def shows(stream_id: str, version: int) -> bool:
        return await read_models.keys_caught_up(user_id_of(stream_id), version)

    return shows


def register(runner: EventRunner, commands: CommandHandlers, services: GatewayServices) -> None:
    keys_shown = _keys_show_in(services.read_models)
    commands.register("keys:replenish", aggregate_of=own_keys, visible=keys_shown)

    async def require_user(user_id: str, caller: str) -> None:
        if user_id == caller:
            return
        async with asyncio.timeout(services.settings.query_timeout_s):
            missing = await services.read_models.missing_users([user_id])
        if missing:
            raise AckError("not_found", "user not found")

    async def publish(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        parts = split_control_fields(raw)
        ctx.command_id, ctx.aggregate_id = parts.command_id, own_keys(ctx.user_id, parts.command_id, parts.payload)
        keys = parse_command(PublishKeys, parts.payload)
        if not signed_prekey_is_valid(services.signatures, keys):
            raise AckError("invalid", "signed_prekey: the signature is not the identity key's signature of it")
        return await commands.execute(ctx, {**raw, "command_id": parts.command_id}, own_keys, (), keys_shown)

    async def bundle(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        parts = split_control_fields(raw)
        ctx.command_id = parts.command_id
        wanted = parse_command(FetchBundle, parts.payload)
        ctx.aggregate_id = keys_stream_id(wanted.user_id)
        await require_user(wanted.user_id, ctx.user_id)
        data = await commands.execute(ctx, {**raw, "command_id": parts.command_id}, bundle_keys, (), keys_shown)
        return {"devices": data.get("devices", [])}

    async def devices(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        query = parse_payload(DevicesQuery, raw)
        await require_user(query.user_id, ctx.user_id)
        async with asyncio.timeout(services.settings.query_timeout_s):
            found = await services.read_models.key_devices(query.user_id)
        return {"devices": found}

    runner.on("keys:publish", publish, kind="command")
    runner.on("keys:bundle", bundle, kind="command")
    runner.on("keys:devices", devices, kind="query")
