"""``media:request-upload``, ``media:upload-complete``, ``media:delete`` (commands of the media's
conversation) and the ``media:get-download-url`` query; the gateway's part is in ``api.media``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.media import MediaAccess, MediaRefused, plan_upload
from api.services import GatewayServices
from api.socket.acks import AckError, parse_payload
from api.socket.commands import CommandHandlers, CommandParts, conversation_aggregate, split_control_fields
from api.socket.events import EventContext, EventRunner
from infra.objects import ObjectStoreUnavailable


class MediaQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    media_id: str = Field(min_length=1, max_length=64)


@contextmanager
def refused() -> Iterator[None]:
    """The media use cases' refusals and an unreachable object store, as acks."""
    try:
        yield
    except MediaRefused as refusal:
        raise AckError(refusal.code, refusal.message) from None
    except ObjectStoreUnavailable as exc:
        raise AckError("unavailable", "the media store is unavailable") from exc


def register(runner: EventRunner, commands: CommandHandlers, services: GatewayServices) -> None:
    access: MediaAccess = services.media

    async def send(
        ctx: EventContext, raw: dict[str, Any], parts: CommandParts, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """The command of the media's conversation, with what the gateway adds to it."""
        return await commands.execute(
            ctx, {**raw, **fields, "command_id": parts.command_id}, conversation_aggregate, ()
        )

    async def request_upload(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        parts = split_control_fields(raw)
        with refused():
            plan = plan_upload(services.settings, parts.payload.get("content_type"), parts.payload.get("size"))
        fields = {"media_id": plan.media_id, "object_key": plan.object_key, "expires_in_s": plan.expires_in_s}
        data = await send(ctx, raw, parts, fields)
        with refused():
            url = await access.upload_url(str(data["object_key"]))
        return {
            "media_id": data["media_id"],
            "upload_url": url,
            "method": "PUT",
            "headers": {"Content-Type": parts.payload.get("content_type")},
            "expires_at": data["expires_at"],
            "version": data["version"],
        }

    async def complete(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        parts = split_control_fields(raw)
        wanted = parse_payload(MediaQuery, parts.payload)
        with refused():
            doc = await access.conversation_of(wanted.media_id)
            found = await access.observed(doc)
        fields = {
            "conversation_id": doc["conversation_id"],
            "media_id": wanted.media_id,
            "observed_size": found.size if found is not None else None,
            "observed_content_type": found.content_type if found is not None else None,
        }
        return await send(ctx, raw, parts, fields)

    async def delete(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        parts = split_control_fields(raw)
        wanted = parse_payload(MediaQuery, parts.payload)
        with refused():
            doc = await access.conversation_of(wanted.media_id)
        data = await send(ctx, raw, parts, {"conversation_id": doc["conversation_id"], "media_id": wanted.media_id})
        await access.remove_object(str(doc["object_key"]))
        return {"version": data["version"]}

    async def download_url(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        wanted = parse_payload(MediaQuery, raw)
        with refused():
            return await access.download_url(ctx.user_id, wanted.media_id)

    runner.on("media:request-upload", request_upload, kind="command")
    runner.on("media:upload-complete", complete, kind="command")
    runner.on("media:delete", delete, kind="command")
    runner.on("media:get-download-url", download_url, kind="query")
