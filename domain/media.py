"""Media of a conversation: uploads announced, completed and deleted by participants.

Media are entities of the conversation aggregate (events of its stream), so the conversation's
single writer decides them together with its messages: who is a participant, which media a
message may carry. Like messages, they are not held in the conversation's state (which stays
bounded): the handler loads the `MediaRef` of each media a command names, as it loads a
`MessageRef`, and `evolve_media` keeps those refs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from domain import catalog as ev
from domain.catalog import NewEvent, new_event
from domain.envelope import EventEnvelope, iso
from domain.errors import conflict, forbidden, invalid, not_found
from domain.upcasting import upcast

MAX_ATTACHMENTS = 10
MEDIA_REF_PREFIX = "media:"  # index key of a MediaRef, beside the MessageRefs (whose keys are bare ids)

MediaStatus = Literal["pending", "ready", "deleted"]


class MediaRef(BaseModel):
    """What deciding about one media item needs; kept per media_id by `evolve_media`."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    media_id: str
    uploader_id: str
    filename: str
    content_type: str
    size: int
    status: MediaStatus = "pending"
    expires_at: str


def media_ref_key(media_id: str) -> str:
    return MEDIA_REF_PREFIX + media_id


def requested(
    conversation_id: str,
    actor: str,
    issued_at: datetime,
    media_id: str,
    object_key: str,
    filename: str,
    content_type: str,
    size: int,
    expires_in_s: int,
    refs: Mapping[str, MediaRef],
) -> tuple[list[NewEvent], dict[str, Any]]:
    """MediaUploadRequested (the participant check is the conversation's)."""
    if media_id in refs:
        raise conflict("this media id is taken")
    expires_at = iso(issued_at + timedelta(seconds=expires_in_s))
    event = ev.MediaUploadRequested(
        conversation_id=conversation_id,
        media_id=media_id,
        uploader_id=actor,
        filename=filename,
        content_type=content_type,
        size=size,
        object_key=object_key,
        requested_at=iso(issued_at),
        expires_at=expires_at,
    )
    return [new_event(event)], {"media_id": media_id, "object_key": object_key, "expires_at": expires_at}


def _media(conversation_id: str, media_id: str, refs: Mapping[str, MediaRef]) -> MediaRef:
    ref = refs.get(media_id)
    if ref is None or ref.conversation_id != conversation_id or ref.status == "deleted":
        raise not_found("media")
    return ref


def _ready_data(ref: MediaRef) -> dict[str, Any]:
    return {"media_id": ref.media_id, "status": "ready", "size": ref.size, "content_type": ref.content_type}


def completed(
    conversation_id: str,
    actor: str,
    issued_at: datetime,
    media_id: str,
    observed_size: int | None,
    observed_content_type: str | None,
    refs: Mapping[str, MediaRef],
) -> tuple[list[NewEvent], dict[str, Any]]:
    """MediaUploaded, once the gateway found the object with the declared size and type."""
    ref = _media(conversation_id, media_id, refs)
    if ref.uploader_id != actor:
        raise forbidden("only the uploader completes an upload")
    if ref.status == "ready":
        return [], _ready_data(ref)  # completed before: the same answer, nothing appended
    if iso(issued_at) > ref.expires_at:
        raise not_found("media (the upload expired)")
    if observed_size is None:
        raise invalid("nothing was uploaded for this media")
    if observed_size != ref.size:
        raise invalid(f"the uploaded object has {observed_size} bytes, {ref.size} were declared")
    if observed_content_type != ref.content_type:
        raise invalid(f"the uploaded object is {observed_content_type!r}, {ref.content_type!r} was declared")
    event = ev.MediaUploaded(
        conversation_id=conversation_id,
        media_id=media_id,
        uploader_id=actor,
        size=ref.size,
        content_type=ref.content_type,
        uploaded_at=iso(issued_at),
    )
    return [new_event(event)], _ready_data(ref)


def deleted(
    conversation_id: str, actor: str, issued_at: datetime, media_id: str, refs: Mapping[str, MediaRef]
) -> list[NewEvent]:
    ref = _media(conversation_id, media_id, refs)
    if ref.uploader_id != actor:
        raise forbidden("only the uploader deletes a media item")
    event = ev.MediaDeleted(
        conversation_id=conversation_id, media_id=media_id, deleted_by=actor, deleted_at=iso(issued_at)
    )
    return [new_event(event)]


def attachments(
    conversation_id: str, actor: str, media_ids: Sequence[str], refs: Mapping[str, MediaRef]
) -> list[ev.Attachment]:
    """What a message carries: ready media of its sender in its conversation, each once."""
    out: list[ev.Attachment] = []
    for media_id in dict.fromkeys(media_ids):
        ref = _media(conversation_id, media_id, refs)
        if ref.uploader_id != actor:
            raise forbidden("a message carries only its sender's media")
        if ref.status != "ready":
            raise invalid(f"media {media_id} is not uploaded yet")
        out.append(
            ev.Attachment(media_id=media_id, filename=ref.filename, content_type=ref.content_type, size=ref.size)
        )
    return out


def evolve_media(ref: MediaRef | None, event: EventEnvelope) -> MediaRef | None:
    """The media index after `event`: MediaUploadRequested creates a ref, MediaUploaded and
    MediaDeleted update the ref they name; anything else passes `ref` through."""
    if event.type not in ev.MEDIA_EVENTS:
        return ref
    payload = ev.parse_payload(event.type, upcast(event).payload)
    if isinstance(payload, ev.MediaUploadRequested):
        if ref is not None and ref.media_id == payload.media_id:
            return ref  # redelivered: keep what happened to it since
        return MediaRef(
            conversation_id=payload.conversation_id,
            media_id=payload.media_id,
            uploader_id=payload.uploader_id,
            filename=payload.filename,
            content_type=payload.content_type,
            size=payload.size,
            expires_at=payload.expires_at,
        )
    if ref is None:
        return None
    match payload:
        case ev.MediaUploaded(media_id=media_id) if media_id == ref.media_id and ref.status == "pending":
            return ref.model_copy(update={"status": "ready"})
        case ev.MediaDeleted(media_id=media_id) if media_id == ref.media_id:
            return ref.model_copy(update={"status": "deleted"})
    return ref


def media_ref_to_dict(ref: MediaRef) -> dict[str, Any]:
    return ref.model_dump(mode="json")


def media_ref_from_dict(data: dict[str, Any]) -> MediaRef:
    return MediaRef.model_validate(data)
