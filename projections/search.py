"""The search projection: events -> documents of three search indexes (messages, conversations, users).

One ``DocumentProjection`` over all three indexes, so the one ``fold`` (projections/base.py) gives it
the per-document stream version (``_sv``) like every other view; a document id names its index
(``messages/<message_id>``, ``conversations/<conversation_id>``, ``users/<user_id>``). ``index_ops``
turns a fold's changes into index operations, each carrying its document's stream version: the
search store writes them with external versioning, so an operation older than what the index holds
(a redelivery, a second writer during a rebuild) is refused by the index and changes nothing.

Deletes are soft: a deleted message stays in the index at its deleting version with ``deleted: true``
and no body, and queries filter it out. A real delete would leave only a tombstone that the index
forgets after a while, and a redelivered older ``MessageSent`` would then bring the message back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from domain import catalog as ev
from domain.envelope import EventEnvelope
from domain.personal import ERASED
from projections.base import CORRELATION_FIELD, STREAM_FIELD, VERSION_FIELD, Doc, Folded, IndexSpec

IndexName = Literal["messages", "conversations", "users"]
INDEXES: tuple[IndexName, ...] = ("messages", "conversations", "users")
SEARCH = "search"

_CONVERSATION_EVENTS = frozenset(
    {"ConversationCreated", "ParticipantsAdded", "ParticipantRemoved", "ParticipantLeft", "ConversationRenamed"}
)
_MESSAGE_EVENTS = frozenset({"MessageSent", "MessageEdited", "MessageDeleted"})


def doc_key(index: IndexName, doc_id: str) -> str:
    return f"{index}/{doc_id}"


def split_key(key: str) -> tuple[IndexName, str]:
    index, _, doc_id = key.partition("/")
    if index not in INDEXES or not doc_id:
        raise ValueError(f"not a search document key: {key!r}")
    return index, doc_id


@dataclass(frozen=True)
class IndexOp:
    """Write ``source`` as document ``doc_id`` of ``index`` at ``version`` (its stream version),
    unless the index holds that document at ``version`` or later."""

    index: IndexName
    doc_id: str
    version: int
    source: dict[str, Any]


class SearchProjection:
    name: str = SEARCH
    indexes: tuple[IndexSpec, ...] = ()
    creating_events: frozenset[str] = frozenset({"UserRegistered", "ConversationCreated", "MessageSent"})

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        if event.type == "UserRegistered":
            return [doc_key("users", str(event.payload["user_id"]))]
        if event.type in _CONVERSATION_EVENTS:
            return [doc_key("conversations", str(event.payload["conversation_id"]))]
        if event.type in _MESSAGE_EVENTS:
            return [doc_key("messages", str(event.payload["message_id"]))]
        return []

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        match ev.parse_payload(event.type, event.payload):
            case ev.UserRegistered() as p:
                if p.username == ERASED:  # an erased user is found by no search
                    return {**_ERASED_USER, "user_id": p.user_id}
                return {
                    "user_id": p.user_id,
                    "username": p.username,
                    "username_normalised": p.normalised,
                    "display_name": p.display_name,
                }
            case ev.ConversationCreated() as p:
                return {
                    "conversation_id": p.conversation_id,
                    "kind": p.kind,
                    "title": p.title,
                    "participant_ids": list(p.participant_ids),
                }
            case ev.ParticipantsAdded() as p if doc is not None:
                current = list(doc["participant_ids"])
                return {**doc, "participant_ids": current + [u for u in p.user_ids if u not in current]}
            case ev.ParticipantRemoved(user_id=user) | ev.ParticipantLeft(user_id=user) if doc is not None:
                return {**doc, "participant_ids": [u for u in doc["participant_ids"] if u != user]}
            case ev.ConversationRenamed(title=title) if doc is not None:
                return {**doc, "title": title}
            case ev.MessageSent() as p:
                return {
                    "message_id": p.message_id,
                    "conversation_id": p.conversation_id,
                    "seq": p.seq,
                    "sender_id": p.sender_id,
                    # None for an end-to-end encrypted message (its ciphertext is never indexed) and
                    # for an erased sender's (found by no search).
                    "body": _searchable(p.body),
                    "sent_at": p.sent_at,
                    "deleted": False,
                }
            case ev.MessageEdited(body=body) if doc is not None:
                return doc if doc["deleted"] else {**doc, "body": _searchable(body)}
            case ev.MessageDeleted() if doc is not None:
                return {**doc, "body": None, "deleted": True}
        # An event about a document this index never saw created (its creation was parked): nothing to show.
        return doc

    def holding(self, user_id: str) -> dict[str, Any] | None:
        """Messages by ``user_id`` and their users document (the search store queries each index)."""
        return {"sender_id": user_id, "user_id": user_id}

    def redact(self, doc: Doc, user_id: str) -> Doc:
        index, _ = split_key(str(doc["_id"]))
        if index == "users" and doc.get("user_id") == user_id:
            return {**doc, **_ERASED_USER}
        if index == "messages" and doc.get("sender_id") == user_id:
            return {**doc, "body": None}
        return doc


_ERASED_USER: dict[str, Any] = {"username": None, "username_normalised": None, "display_name": None}


def _searchable(body: str | None) -> str | None:
    return None if body == ERASED else body


def index_ops(folded: Folded) -> list[IndexOp]:
    """The index operations a fold's changes need, in a stable order (one bulk request)."""
    ops: list[IndexOp] = []
    for key in sorted(folded.changed):
        doc = folded.docs[key]
        if doc is None:  # the projection never removes a document (soft deletes): nothing to write
            continue
        index, doc_id = split_key(key)
        ops.append(IndexOp(index, doc_id, int(doc[VERSION_FIELD]), to_source(doc)))
    return ops


# Stream metadata travels in the source under plain names (the index reserves names starting with "_").
_META = ((STREAM_FIELD, "stream_id"), (VERSION_FIELD, "stream_version"), (CORRELATION_FIELD, "correlation_id"))


def to_source(doc: Doc) -> dict[str, Any]:
    """A folded document as an index document's source."""
    source = {k: v for k, v in doc.items() if k not in ("_id", STREAM_FIELD, VERSION_FIELD, CORRELATION_FIELD)}
    for ours, theirs in _META:
        source[theirs] = doc.get(ours)
    return source


def from_source(index: IndexName, doc_id: str, source: dict[str, Any]) -> Doc:
    """An index document's source as the fold's document (the inverse of ``to_source``)."""
    doc: Doc = {k: v for k, v in source.items() if k not in {theirs for _, theirs in _META}}
    for ours, theirs in _META:
        doc[ours] = source.get(theirs)
    doc["_id"] = doc_key(index, doc_id)
    return doc


def final_index(ops: Iterable[IndexOp]) -> dict[tuple[IndexName, str], tuple[int, dict[str, Any]]]:
    """What an index holds after ``ops`` applied with external versioning, in any order (for tests
    and the in-memory fake): per document, the operation with the highest version."""
    out: dict[tuple[IndexName, str], tuple[int, dict[str, Any]]] = {}
    for op in ops:
        held = out.get((op.index, op.doc_id))
        if held is None or op.version > held[0]:
            out[(op.index, op.doc_id)] = (op.version, op.source)
    return out
