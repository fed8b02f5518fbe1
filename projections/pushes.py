"""Which server pushes an event causes, and to whom: pure, from the event and the conversation view
(for a key directory event: from the event and the user's conversation partners).

Recipients are the conversation's participants right after the event (the view the push
fold produced), so a member removed later in the same batch still gets what was said
while they were in it, and a removed member gets nothing after.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from domain import catalog as ev
from domain.envelope import EventEnvelope
from projections.base import Doc

CONVERSATION_CHANGES = frozenset(
    {
        "ConversationCreated",
        "ParticipantsAdded",
        "ParticipantRemoved",
        "ParticipantLeft",
        "AdminPromoted",
        "ConversationRenamed",
    }
)


@dataclass(frozen=True)
class Push:
    event: str  # the Socket.IO event name
    data: dict[str, Any]
    user_ids: tuple[str, ...]


def pushes_for(event: EventEnvelope, conversation: Doc | None) -> list[Push]:
    if conversation is None:
        return []
    p = event.payload
    participants = tuple(conversation["participant_ids"])
    base: dict[str, Any] = {
        "conversation_id": conversation["conversation_id"],
        "version": event.stream_version,
        "correlation_id": event.correlation_id,
    }
    if event.type == "MessageSent":
        data = {
            **base,
            "message_id": p["message_id"],
            "seq": p["seq"],
            "sender_id": p["sender_id"],
            "body": p["body"],
            "ciphertext": p.get("ciphertext"),
            "attachments": list(p.get("attachments") or []),
            "sent_at": p["sent_at"],
        }
        return [Push("message:new", data, participants)]
    if event.type == "MediaUploaded":
        data = {**base, "media_id": p["media_id"], "uploader_id": p["uploader_id"], "size": p["size"]}
        data["content_type"] = p["content_type"]
        return [Push("media:ready", data, participants)]
    if event.type == "MessageEdited":
        data = {
            **base,
            "message_id": p["message_id"],
            "seq": p["seq"],
            "body": p["body"],
            "ciphertext": p.get("ciphertext"),
            "edited_at": p["edited_at"],
        }
        return [Push("message:edited", data, participants)]
    if event.type == "MessageDeleted":
        return [Push("message:deleted", {**base, "message_id": p["message_id"], "seq": p["seq"]}, participants)]
    if event.type == "ReactionChanged":
        data = {**base, "message_id": p["message_id"], "user_id": p["user_id"], "emoji": p["emoji"], "on": p["on"]}
        return [Push("message:reaction", data, participants)]
    if event.type == "ReadMarkerMoved":
        others = tuple(u for u in participants if u != p["user_id"])
        data = {**base, "user_id": p["user_id"], "seq": p["seq"]}
        return [Push("receipt:read", data, others)]
    if event.type in CONVERSATION_CHANGES:
        data = {
            **base,
            "change": event.type,
            "kind": conversation["kind"],
            "title": conversation["title"],
            "participant_ids": list(participants),
        }
        return [Push("conversation:updated", data, participants)]
    return []


def keys_pushes(event: EventEnvelope, partners: Iterable[str]) -> list[Push]:
    """`keys:changed` when a device of the user appears or changes identity key, to everyone who shares
    a conversation with them (``partners``, from the conversations view) and to the user's own sockets."""
    if event.type != ev.DeviceKeysPublished.event_type:
        return []
    p = ev.DeviceKeysPublished.model_validate(event.payload)
    if not (p.identity_changed or p.new_device):
        return []
    data = {
        "user_id": p.user_id,
        "device_id": p.device_id,
        "identity_changed": p.identity_changed,
        "new_device": p.new_device,
        "version": event.stream_version,
        "correlation_id": event.correlation_id,
    }
    return [Push("keys:changed", data, tuple(sorted({*partners, p.user_id})))]
