"""The SearchIndex contract (api/search.py), run against every adapter of it.

Subclasses provide ``index`` (the SearchIndex) and ``write`` (writes IndexOps as the search store
does, with external versioning)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from api.search import SearchIndex
from projections.search import IndexOp

Write = Callable[[Sequence[IndexOp]], Awaitable[None]]


def new_id() -> str:
    return str(uuid.uuid4())


def message(conversation_id: str, body: str, version: int = 2, *, deleted: bool = False, seq: int = 1) -> IndexOp:
    mid = new_id()
    source: dict[str, Any] = {
        "message_id": mid,
        "conversation_id": conversation_id,
        "seq": seq,
        "sender_id": "sender-1",
        "body": None if deleted else body,
        "sent_at": "2026-01-01T00:00:00.000Z",
        "deleted": deleted,
        "stream_id": f"conversation:{conversation_id}",
        "stream_version": version,
        "correlation_id": "c",
    }
    return IndexOp("messages", mid, version, source)


def conversation(title: str | None, kind: str = "group", version: int = 1) -> IndexOp:
    cid = new_id()
    source = {"conversation_id": cid, "kind": kind, "title": title, "participant_ids": ["a"], "stream_version": version}
    return IndexOp("conversations", cid, version, source)


def user(username: str, display_name: str) -> IndexOp:
    uid = new_id()
    source = {
        "user_id": uid,
        "username": username,
        "username_normalised": username.lower(),
        "display_name": display_name,
        "stream_version": 1,
    }
    return IndexOp("users", uid, 1, source)


class SearchIndexContract:
    async def test_messages_match_every_word_within_the_given_conversations(
        self, index: SearchIndex, write: Write
    ) -> None:
        mine, other = new_id(), new_id()
        hit = message(mine, "the quarterly budget review is on Monday")
        await write([hit, message(mine, "budget only"), message(other, "the quarterly budget review, elsewhere")])
        found = await index.messages("quarterly budget", [mine], 10)
        assert [h["message_id"] for h in found] == [hit.doc_id]
        assert found[0]["conversation_id"] == mine and found[0]["seq"] == 1 and found[0]["sender_id"] == "sender-1"
        assert found[0]["sent_at"] == "2026-01-01T00:00:00.000Z"
        assert "<em>quarterly</em>" in found[0]["snippet"] and "<em>budget</em>" in found[0]["snippet"]
        assert await index.messages("quarterly budget", [], 10) == []
        assert await index.messages("nonexistentword", [mine, other], 10) == []

    async def test_snippets_are_escaped_html(self, index: SearchIndex, write: Write) -> None:
        conv = new_id()
        await write([message(conv, "<script>alert(1)</script> tangerine")])
        (found,) = await index.messages("tangerine", [conv], 10)
        assert "<script>" not in found["snippet"] and "&lt;script&gt;" in found["snippet"]
        assert "<em>tangerine</em>" in found["snippet"]

    async def test_deleted_messages_are_not_found(self, index: SearchIndex, write: Write) -> None:
        conv = new_id()
        sent = message(conv, "ephemeral words", version=2)
        await write([sent])
        assert len(await index.messages("ephemeral", [conv], 10)) == 1
        gone = {**sent.source, "body": None, "deleted": True, "stream_version": 3}
        await write([IndexOp("messages", sent.doc_id, 3, gone)])
        assert await index.messages("ephemeral", [conv], 10) == []

    async def test_an_older_version_never_replaces_a_newer_one(self, index: SearchIndex, write: Write) -> None:
        conv = new_id()
        sent = message(conv, "original wording", version=2)
        edited = IndexOp("messages", sent.doc_id, 5, {**sent.source, "body": "revised wording", "stream_version": 5})
        deleted = IndexOp("messages", sent.doc_id, 7, {**sent.source, "body": None, "deleted": True})
        await write([edited])
        await write([sent])  # a redelivery of the older operation
        assert [h["message_id"] for h in await index.messages("revised", [conv], 10)] == [sent.doc_id]
        assert await index.messages("original", [conv], 10) == []
        await write([deleted])
        await write([sent, edited])  # a delete is not undone by older operations arriving again
        assert await index.messages("wording", [conv], 10) == []

    async def test_limit(self, index: SearchIndex, write: Write) -> None:
        conv = new_id()
        await write([message(conv, f"repeated pineapple {i}", seq=i + 1) for i in range(5)])
        assert len(await index.messages("pineapple", [conv], 3)) == 3
        assert len(await index.messages("pineapple", [conv], 50)) == 5

    async def test_conversations_by_title_within_the_given_ones(self, index: SearchIndex, write: Write) -> None:
        falcon, hidden, untitled = conversation("Project Falcon"), conversation("Project Falcon"), conversation(None)
        await write([falcon, hidden, untitled])
        found = await index.conversations("falcon", [falcon.doc_id, untitled.doc_id], 10)
        assert found == [{"conversation_id": falcon.doc_id, "title": "Project Falcon", "kind": "group"}]
        renamed = IndexOp("conversations", falcon.doc_id, 4, {**falcon.source, "title": "Project Osprey"})
        await write([renamed])
        assert await index.conversations("falcon", [falcon.doc_id], 10) == []
        assert [h["title"] for h in await index.conversations("osprey", [falcon.doc_id], 10)] == ["Project Osprey"]

    async def test_users_by_name_or_username_prefix(self, index: SearchIndex, write: Write) -> None:
        tag = uuid.uuid4().hex[:8]
        ada = user(f"ada{tag}", f"Ada Lovelace{tag}")
        before = await index.users_count()
        await write([ada, user(f"bob{tag}", "Bob")])
        assert await index.users_count() == before + 2
        by_prefix = await index.users(f"ada{tag[:4]}", 10)
        assert {
            "user_id": ada.doc_id,
            "username": ada.source["username"],
            "display_name": ada.source["display_name"],
        } in by_prefix
        by_name = await index.users(f"lovelace{tag}", 10)
        assert [h["user_id"] for h in by_name] == [ada.doc_id]
