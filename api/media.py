"""The gateway's media use cases: what `media:*` need besides sending the command.

- `media:request-upload`: size and type against settings, a random media id and object key
  (the command carries them, so a redelivered command decides the same), then a presigned PUT.
- `media:upload-complete` and `media:delete`: the media's conversation from the media read model
  (commands go to the conversation's single writer), and for completion what the object store
  holds under the key (stat), which the domain compares with what was declared.
- `media:get-download-url`: owner or current participant, decided from the read models and
  cached (`AuthzCache`: allowed 300 s, denied 60 s, invalidated by generation), then a presigned GET.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from domain.envelope import iso
from domain.errors import ErrorCode
from domain.personal import ERASED
from infra.authz_cache import AccessDecision, Generations
from infra.objects import ObjectInfo
from infra.settings import Settings

log = logging.getLogger("parley.gateway.media")


class MediaRefused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


class ObjectStore(Protocol):
    """Media objects (``infra.objects.S3ObjectStore``); raises ``ObjectStoreUnavailable`` when down."""

    async def upload_url(self, key: str, ttl_s: int) -> str: ...

    async def download_url(self, key: str, ttl_s: int, filename: str | None = None) -> str: ...

    async def stat(self, key: str) -> ObjectInfo | None: ...

    async def remove(self, key: str) -> None: ...


class AuthzCache(Protocol):
    """Download decisions with their generations (``infra.authz_cache.RedisAuthzCache``)."""

    async def media_generation(self, media_id: str) -> int: ...

    async def conversation_generation(self, conversation_id: str) -> int: ...

    async def decision(self, user_id: str, media_id: str) -> AccessDecision | None: ...

    async def remember(
        self, user_id: str, media_id: str, decision: AccessDecision, generations: Generations, ttl_s: float
    ) -> None: ...

    async def forget_conversation(self, conversation_id: str) -> None: ...

    async def forget_media(self, media_id: str) -> None: ...


class MediaViews(Protocol):
    """The read models a media decision needs (``infra.mongo.read_models.ReadModels``)."""

    async def media(self, media_id: str) -> dict[str, Any] | None: ...

    async def conversation_of_participant(self, conversation_id: str, user_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class UploadPlan:
    media_id: str
    object_key: str
    expires_in_s: int


def plan_upload(settings: Settings, content_type: object, size: object) -> UploadPlan:
    """The gateway's part of an upload request: limits from settings, a random id and key."""
    if type(size) is int and size > settings.media_max_bytes:
        raise MediaRefused("invalid", f"size: at most {settings.media_max_bytes} bytes")
    if isinstance(content_type, str) and content_type.lower() not in settings.media_content_types:
        raise MediaRefused("invalid", f"content_type: not one of {', '.join(settings.media_content_types)}")
    return UploadPlan(
        media_id=str(uuid.uuid4()),
        object_key=f"media/{secrets.token_urlsafe(24)}",
        expires_in_s=settings.media_upload_ttl_s,
    )


class MediaAccess:
    def __init__(self, settings: Settings, views: MediaViews, objects: ObjectStore, cache: AuthzCache) -> None:
        self._settings = settings
        self._views = views
        self._objects = objects
        self._cache = cache

    async def conversation_of(self, media_id: str) -> dict[str, Any]:
        """The media's read model document; `not_found` when there is none."""
        doc = await self._views.media(media_id)
        if doc is None:
            raise MediaRefused("not_found", "media not found")
        return doc

    async def observed(self, doc: dict[str, Any]) -> ObjectInfo | None:
        return await self._objects.stat(str(doc["object_key"]))

    async def upload_url(self, object_key: str) -> str:
        return await self._objects.upload_url(object_key, self._settings.media_upload_ttl_s)

    async def remove_object(self, object_key: str) -> None:
        """Best effort at once; the worker's sweep removes it otherwise."""
        try:
            await self._objects.remove(object_key)
        except Exception:
            log.warning("media object not removed now; the sweep will", exc_info=True)

    async def decide(self, user_id: str, media_id: str) -> AccessDecision:
        """Owner or current participant of a ready media item's conversation, cached by generation."""
        cached = await self._cache.decision(user_id, media_id)
        if cached is not None:
            return cached
        media_gen = await self._cache.media_generation(media_id)
        doc = await self._views.media(media_id)
        if doc is None:
            decision = AccessDecision(allowed=False)
            await self._cache.remember(
                user_id, media_id, decision, Generations(0, media_gen), self._settings.media_authz_denied_ttl_s
            )
            return decision
        conversation_id = str(doc["conversation_id"])
        conversation_gen = await self._cache.conversation_generation(conversation_id)
        member = await self._views.conversation_of_participant(conversation_id, user_id)
        # An erased uploader's media are gone (their objects removed with the erasure).
        erased = doc.get("filename") == ERASED
        allowed = (
            doc.get("status") == "ready" and not erased and (member is not None or doc.get("uploader_id") == user_id)
        )
        decision = AccessDecision(
            allowed=allowed,
            conversation_id=conversation_id,
            object_key=str(doc["object_key"]) if allowed else None,
            filename=str(doc.get("filename")) if allowed else None,
        )
        ttl = self._settings.media_authz_allowed_ttl_s if allowed else self._settings.media_authz_denied_ttl_s
        await self._cache.remember(user_id, media_id, decision, Generations(conversation_gen, media_gen), ttl)
        return decision

    async def download_url(self, user_id: str, media_id: str) -> dict[str, Any]:
        decision = await self.decide(user_id, media_id)
        if not decision.allowed or decision.object_key is None:
            raise MediaRefused("not_found", "media not found")
        ttl = self._settings.media_download_ttl_s
        url = await self._objects.download_url(decision.object_key, ttl, decision.filename)
        return {"media_id": media_id, "url": url, "expires_at": iso(datetime.now(UTC) + timedelta(seconds=ttl))}
