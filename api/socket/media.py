"""``media:request-upload``, ``media:upload-complete``, ``media:delete`` (commands of the media's
conversation) and the ``media:get-download-url`` query; the gateway's part is in ``api.media``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.media import MediaAccess, MediaRefused, plan_upload
from api.services import GatewayServices
from api.socket.acks import AckError, parse_payload
from api.socket.commands import CommandHandlers, conversation_aggregate, split_control_fields
from api.socket.events import EventContext, EventRunner
from infra.objects import ObjectStoreUnavailable


class MediaQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    media_id: str = Field(min_length=1, max_length=64)


def register(runner: EventRunner, commands: CommandHandlers, services: GatewayServices) -> None:
    access: MediaAccess = services.media

    async def refusing(call: Any) -> Any:
        try:
            return await call
        except MediaRefused as refused:
            raise AckError(refused.code, refused.message) from None
        except ObjectStoreUnavailable as exc:
            raise AckError("unavailable", "the media store is unavailable") from exc

    async def send(ctx: EventContext, raw: dict[str, Any], command_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return await commands.execute(ctx, {**raw, **fields, "command_id": command_id}, conversation_aggregate, ())

    async def request_upload(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        parts = split_control_fields(raw)
        plan = await refusing(_plan(parts.payload))
        fields = {"media_id": plan.media_id, "object_key": plan.object_key, "expires_in_s": plan.expires_in_s}
        data = await commands.execute(
            ctx, {**raw, **fields, "command_id": parts.command_id}, conversation_aggregate, ()
        )
        url = await refusing(access.upload_url(str(data["object_key"])))
        return {
            "media_id": data["media_id"],
            "upload_url": url,
            "method": "PUT",
            "headers": {"Content-Type": parts.payload.get("content_type")},
            "expires_at": data["expires_at"],
            "version": data["version"],
        }

    async def _plan(payload: dict[str, Any]) -> Any:
        return plan_upload(services.settings, payload.get("content_type"), payload.get("size"))

    async def complete(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        parts = split_control_fields(raw)
        wanted = parse_payload(MediaQuery, parts.payload)
        doc = await refusing(access.conversation_of(wanted.media_id))
        found = await refusing(access.observed(doc))
        fields = {
            "conversation_id": doc["conversation_id"],
            "media_id": wanted.media_id,
            "observed_size": found.size if found is not None else None,
            "observed_content_type": found.content_type if found is not None else None,
        }
        return await commands.execute(
            ctx, {**raw, **fields, "command_id": parts.command_id}, conversation_aggregate, ()
        )

    async def delete(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        parts = split_control_fields(raw)
        wanted = parse_payload(MediaQuery, parts.payload)
        doc = await refusing(access.conversation_of(wanted.media_id))
        fields = {"conversation_id": doc["conversation_id"], "media_id": wanted.media_id}
        data = await commands.execute(
            ctx, {**raw, **fields, "command_id": parts.command_id}, conversation_aggregate, ()
        )
        await access.remove_object(str(doc["object_key"]))
        return {"version": data["version"]}

    async def download_url(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        wanted = parse_payload(MediaQuery, raw)
        result: dict[str, Any] = await refusing(access.download_url(ctx.user_id, wanted.media_id))
        return result

    runner.on("media:request-upload", request_upload, kind="command")
    runner.on("media:upload-complete", complete, kind="command")
    runner.on("media:delete", delete, kind="command")
    runner.on("media:get-download-url", download_url, kind="query")
