"""The conversations read model: one document per conversation, behind `conversation:list`."""

from __future__ import annotations

from typing import Any

from domain.conversation import conversation_in
from domain.envelope import EventEnvelope, iso
from projections.base import Doc, IndexSpec
from projections.messages import redacted_content


class ConversationsProjection:
    name: str = "conversations"
    indexes: tuple[IndexSpec, ...] = (
        IndexSpec((("participant_ids", 1), ("last_activity_at", -1)), name="by_participant_activity"),
        IndexSpec((("kind", 1),), name="by_kind"),
    )
    creating_events: frozenset[str] = frozenset({"ConversationCreated"})

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        conversation_id = conversation_in(event.stream_id)
        return [conversation_id] if conversation_id else []

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        p = event.payload
        at = _iso(event)
        if event.type == "ConversationCreated":
            members = {
                uid: {"role": "admin" if uid in p["admin_ids"] else "member", "joined_version": event.stream_version}
                for uid in p["participant_ids"]
            }
            return {
                "conversation_id": doc_id,
                "kind": p["kind"],
                "title": p.get("title"),
                "participant_ids": list(p["participant_ids"]),
                "members": members,
                "created_by": p["created_by"],
                "created_at": at,
                "last_message": None,
                "last_seq": 0,
                "last_activity_at": at,
                "read_markers": {},
                "version": event.stream_version,
            }
        if doc is None:
            return None  # events of a conversation whose creation this view never saw: nothing to show
        new: dict[str, Any] = {**doc, "version": event.stream_version}
        if event.type == "ParticipantsAdded":
            members = dict(doc["members"])
            participants = list(doc["participant_ids"])
            for uid in p["user_ids"]:
                if uid not in members:
                    participants.append(uid)
                members[uid] = {"role": p.get("role", "member"), "joined_version": event.stream_version}
            new.update(members=members, participant_ids=participants, last_activity_at=at)
        elif event.type in ("ParticipantRemoved", "ParticipantLeft"):
            uid = p["user_id"]
            members = {k: v for k, v in doc["members"].items() if k != uid}
            markers = {k: v for k, v in doc["read_markers"].items() if k != uid}
            new.update(
                members=members,
                participant_ids=[u for u in doc["participant_ids"] if u != uid],
                read_markers=markers,
            )
        elif event.type == "AdminPromoted":
            members = dict(doc["members"])
            if p["user_id"] in members:
                members[p["user_id"]] = {**members[p["user_id"]], "role": "admin"}
            new["members"] = members
        elif event.type == "ConversationRenamed":
            new.update(title=p["title"], last_activity_at=at)
        elif event.type == "MessageSent":
            new.update(
                last_message={
                    "message_id": p["message_id"],
                    "seq": p["seq"],
                    "sender_id": p["sender_id"],
                    "body": p["body"],
                    "ciphertext": p.get("ciphertext"),
                    "sent_at": p["sent_at"],
                    "deleted": False,
                },
                last_seq=max(int(doc["last_seq"]), int(p["seq"])),
                last_activity_at=at,
            )
        elif event.type in ("MessageEdited", "MessageDeleted"):
            last = doc.get("last_message")
            if last is not None and last["message_id"] == p["message_id"]:
                if event.type == "MessageEdited":
                    new["last_message"] = {**last, "body": p["body"], "ciphertext": p.get("ciphertext")}
                else:
                    new["last_message"] = {**last, "body": None, "ciphertext": None, "deleted": True}
        elif event.type == "ReadMarkerMoved":
            markers = dict(doc["read_markers"])
            markers[p["user_id"]] = max(int(markers.get(p["user_id"], 0)), int(p["seq"]))
            new["read_markers"] = markers
        return new

    def holding(self, user_id: str) -> dict[str, Any] | None:
        return {"last_message.sender_id": user_id}

    def redact(self, doc: Doc, user_id: str) -> Doc:
        last = doc.get("last_message")
        if not isinstance(last, dict) or last.get("sender_id") != user_id:
            return doc
        return {**doc, "last_message": {**last, **redacted_content(last)}}


def _iso(event: EventEnvelope) -> str:
    return iso(event.occurred_at)
