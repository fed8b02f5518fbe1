"""The messages read model: one document per message, behind `message:history`.

A deleted message keeps its place (its seq) with ``deleted: true`` and no body. An end-to-end
encrypted message has ``format: "e2e"``, ``body: None`` and its ``ciphertext`` as sent.
"""

from __future__ import annotations

from typing import Any

from domain.catalog import MESSAGE_EVENTS
from domain.envelope import EventEnvelope
from domain.personal import ERASED
from projections.base import Doc, IndexSpec


class MessagesProjection:
    name: str = "messages"
    indexes: tuple[IndexSpec, ...] = (
        IndexSpec((("conversation_id", 1), ("seq", -1)), unique=True, name="by_conversation_seq"),
        IndexSpec((("sender_id", 1), ("sent_at", -1)), name="by_sender"),
    )
    creating_events: frozenset[str] = frozenset({"MessageSent"})

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        if event.type in MESSAGE_EVENTS:
            return [str(event.payload["message_id"])]
        return []

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        p = event.payload
        if event.type == "MessageSent":
            return {
                "message_id": doc_id,
                "conversation_id": p["conversation_id"],
                "seq": p["seq"],
                "sender_id": p["sender_id"],
                "body": p["body"],
                "ciphertext": p.get("ciphertext"),
                "attachments": list(p.get("attachments") or []),
                "format": p.get("format", "plain"),
                "sent_at": p["sent_at"],
                "edited_at": None,
                "deleted": False,
                "reactions": {},
            }
        if doc is None:
            return None
        if event.type == "MessageEdited":
            if doc["deleted"]:
                return doc
            return {**doc, "body": p["body"], "ciphertext": p.get("ciphertext"), "edited_at": p["edited_at"]}
        if event.type == "MessageDeleted":
            return {**doc, "body": None, "ciphertext": None, "deleted": True, "reactions": {}}
        if event.type == "ReactionChanged":
            reactions = {k: list(v) for k, v in doc["reactions"].items()}
            users = set(reactions.get(p["emoji"], []))
            if p["on"]:
                users.add(p["user_id"])
            else:
                users.discard(p["user_id"])
            if users:
                reactions[p["emoji"]] = sorted(users)
            else:
                reactions.pop(p["emoji"], None)
            return {**doc, "reactions": reactions}
        return doc

    def holding(self, user_id: str) -> dict[str, Any] | None:
        return {"sender_id": user_id}

    def redact(self, doc: Doc, user_id: str) -> Doc:
        if doc.get("sender_id") != user_id:
            return doc
        return {
            **doc,
            **redacted_content(doc),
            "attachments": [redacted_attachment(a) for a in doc.get("attachments") or []],
        }


def redacted_content(message: Doc) -> Doc:
    """A message's ``body`` and ``ciphertext`` as an erased sender's key shows them (absent stays absent)."""
    return {field: ERASED for field in ("body", "ciphertext") if message.get(field) is not None}


def redacted_attachment(attachment: Any) -> Any:
    if isinstance(attachment, dict) and attachment.get("filename") is not None:
        return {**attachment, "filename": ERASED}
    return attachment
