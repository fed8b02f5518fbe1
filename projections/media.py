"""The media read model: one document per media item, behind `media:*` and message attachments.

The gateway finds a media's conversation and object key here (`media:upload-complete`,
`media:delete`, `media:get-download-url`) and which attachments of a history page are still
there. A pending upload past `expires_at` counts as expired when read: the rule needs no event,
so a rebuild gives the same view whatever the time of day.
"""

from __future__ import annotations

from typing import Any

from domain import catalog as ev
from domain.envelope import EventEnvelope
from domain.personal import ERASED
from projections.base import Doc, IndexSpec


class MediaProjection:
    name: str = "media"
    indexes: tuple[IndexSpec, ...] = (
        IndexSpec((("status", 1), ("expires_at", 1)), name="by_status_expiry"),
        IndexSpec((("conversation_id", 1),), name="by_conversation"),
    )
    creating_events: frozenset[str] = frozenset({"MediaUploadRequested"})

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        if event.type in ev.MEDIA_EVENTS:
            return [str(event.payload["media_id"])]
        return []

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        match ev.parse_payload(event.type, event.payload):
            case ev.MediaUploadRequested() as p:
                if doc is not None:
                    return doc
                return {
                    "media_id": doc_id,
                    "conversation_id": p.conversation_id,
                    "uploader_id": p.uploader_id,
                    "filename": p.filename,
                    "content_type": p.content_type,
                    "size": p.size,
                    "object_key": p.object_key,
                    "status": "pending",
                    "requested_at": p.requested_at,
                    "expires_at": p.expires_at,
                    "uploaded_at": None,
                    "deleted_at": None,
                }
            case ev.MediaUploaded() as p if doc is not None and doc["status"] == "pending":
                return {**doc, "status": "ready", "uploaded_at": p.uploaded_at}
            case ev.MediaDeleted() as p if doc is not None:
                return {**doc, "status": "deleted", "deleted_at": p.deleted_at}
        return doc

    def holding(self, user_id: str) -> dict[str, Any] | None:
        return {"uploader_id": user_id}

    def redact(self, doc: Doc, user_id: str) -> Doc:
        if doc.get("uploader_id") != user_id:
            return doc
        return {**doc, "filename": ERASED}
