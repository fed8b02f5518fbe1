"""Queries the gateway serves from the MongoDB read models (never from the log).

Collections are resolved through the :class:`ProjectionRegistry`, so a rebuilt generation is
picked up as soon as it is swapped in. Documents leave this module without their storage
fields (``_id``, ``_sv``, ``_stream``) and never with a password hash, except through
:meth:`ReadModels.credentials`, which exists for login only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from domain.personal import ERASED
from infra.mongo.client import MongoDoc
from infra.mongo.documents import ProjectionRegistry

USERS = "users"
CONVERSATIONS = "conversations"
MESSAGES = "messages"
KEYS = "keys"
MEDIA = "media"

_HIDDEN = frozenset({"_id", "_sv", "_stream", "password_hash"})
# last_activity_at is the cursor a client passes back as `before` for the next page.
CONVERSATION_FIELDS = (
    "conversation_id",
    "kind",
    "title",
    "participant_ids",
    "last_message",
    "last_activity_at",
    "version",
)
MESSAGE_FIELDS = (
    "message_id",
    "seq",
    "sender_id",
    "body",
    "ciphertext",
    "attachments",
    "sent_at",
    "edited_at",
    "deleted",
    "reactions",
)


def public(doc: MongoDoc) -> MongoDoc:
    """A read-model document without storage fields and secrets."""
    return {k: v for k, v in doc.items() if k not in _HIDDEN}


# Users whose account is not erased (projections/users.py: an erased user's name reads "[erased]").
_LIVE = {"username": {"$ne": ERASED}}


@dataclass(frozen=True)
class Credentials:
    user_id: str
    username: str
    password_hash: str


@dataclass(frozen=True)
class HistoryPage:
    messages: list[MongoDoc]
    has_more: bool


class ReadModels:
    def __init__(self, db: AsyncDatabase[MongoDoc], registry: ProjectionRegistry | None = None) -> None:
        self._db = db
        self._registry = registry or ProjectionRegistry(db)

    async def _coll(self, name: str) -> AsyncCollection[MongoDoc]:
        return self._db[await self._registry.live_collection(name)]

    # Users ------------------------------------------------------------------------------
    async def credentials(self, username_normalised: str) -> Credentials | None:
        doc = await (await self._coll(USERS)).find_one(
            {"username_normalised": username_normalised},
            projection={"user_id": 1, "username": 1, "password_hash": 1},
        )
        if doc is None:
            return None
        return Credentials(str(doc["user_id"]), str(doc["username"]), str(doc["password_hash"]))

    async def user(self, user_id: str) -> MongoDoc | None:
        doc = await (await self._coll(USERS)).find_one({"_id": user_id}, projection={"password_hash": 0})
        return None if doc is None else public(doc)

    async def user_exists(self, user_id: str) -> bool:
        """Registered and not erased."""
        found = await (await self._coll(USERS)).find_one({"_id": user_id, **_LIVE}, projection={"_id": 1})
        return found is not None

    async def missing_users(self, user_ids: Iterable[str]) -> list[str]:
        """Those of ``user_ids`` that are not registered users (in first-seen order)."""
        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            return []
        found: set[str] = set()
        async for doc in (await self._coll(USERS)).find({"_id": {"$in": wanted}, **_LIVE}, projection={"_id": 1}):
            found.add(str(doc["_id"]))
        return [u for u in wanted if u not in found]

    # Conversations ----------------------------------------------------------------------
    async def conversation(self, conversation_id: str) -> MongoDoc | None:
        return await (await self._coll(CONVERSATIONS)).find_one({"_id": conversation_id})

    async def conversation_of_participant(self, conversation_id: str, user_id: str) -> MongoDoc | None:
        """The conversation if ``user_id`` is a current participant, else None (no existence leak)."""
        return await (await self._coll(CONVERSATIONS)).find_one({"_id": conversation_id, "participant_ids": user_id})

    async def list_conversations(
        self, user_id: str, limit: int, before: str | None, before_id: str | None = None
    ) -> list[MongoDoc]:
        """The caller's conversations, newest activity first, each with its unread count and its
        ``cursor``; ``before`` (+ ``before_id`` to break ties of equal times) pages back."""
        query: MongoDoc = {"participant_ids": user_id}
        if before is not None and before_id is not None:
            query["$or"] = [
                {"last_activity_at": {"$lt": before}},
                {"last_activity_at": before, "_id": {"$lt": before_id}},
            ]
        elif before is not None:
            query["last_activity_at"] = {"$lt": before}
        conversations = await self._coll(CONVERSATIONS)
        docs = (
            await conversations.find(query)
            .sort([("last_activity_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
            .to_list()
        )
        messages = await self._coll(MESSAGES)
        counts = await asyncio.gather(*(self._unread(messages, doc, user_id) for doc in docs))
        return [
            {
                **{f: doc.get(f) for f in CONVERSATION_FIELDS},
                "unread_count": count,
                "cursor": f"{doc.get('last_activity_at')}|{doc['_id']}",
            }
            for doc, count in zip(docs, counts, strict=True)
        ]

    @staticmethod
    async def _unread(messages: AsyncCollection[MongoDoc], doc: MongoDoc, user_id: str) -> int:
        marker = int((doc.get("read_markers") or {}).get(user_id, 0))
        if int(doc.get("last_seq") or 0) <= marker:
            return 0
        return await messages.count_documents(
            {
                "conversation_id": doc["conversation_id"],
                "seq": {"$gt": marker},
                "sender_id": {"$ne": user_id},
                "deleted": False,
            }
        )

    async def conversation_versions(self, user_id: str) -> dict[str, int]:
        """The conversations ``user_id`` is a participant of now, each with its stream version
        (the search scope, and the search cache key: api/search.py)."""
        conversations = await self._coll(CONVERSATIONS)
        return {
            str(doc["_id"]): int(doc.get("version") or 0)
            async for doc in conversations.find({"participant_ids": user_id}, projection={"version": 1})
        }

    # Messages ---------------------------------------------------------------------------
    async def history(self, conversation_id: str, before_seq: int | None, limit: int) -> HistoryPage:
        query: MongoDoc = {"conversation_id": conversation_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        docs = await (await self._coll(MESSAGES)).find(query).sort("seq", DESCENDING).limit(limit + 1).to_list()
        page = [{f: doc.get(f) for f in MESSAGE_FIELDS} for doc in docs[:limit]]
        attached = {str(a["media_id"]) for m in page for a in m.get("attachments") or []}
        alive: set[str] = set()
        if attached:  # a deleted media item is gone from every message that carried it
            media = await self._coll(MEDIA)
            found = media.find({"_id": {"$in": sorted(attached)}, "status": "ready"}, projection={"_id": 1})
            alive = {str(doc["_id"]) async for doc in found}
        for message in page:
            message["attachments"] = [a for a in message.get("attachments") or [] if a["media_id"] in alive]
        return HistoryPage(messages=page, has_more=len(docs) > limit)

    # Media ------------------------------------------------------------------------------
    async def media(self, media_id: str) -> MongoDoc | None:
        """The media item's document (any status), None if there is none."""
        return await (await self._coll(MEDIA)).find_one({"_id": media_id})

    async def media_due_for_removal(self, since: str, until: str) -> list[MongoDoc]:
        """Media whose object must go: pending uploads that expired, and deleted media, in (since, until]."""
        query: MongoDoc = {
            "$or": [
                {"status": "pending", "expires_at": {"$gt": since, "$lte": until}},
                {"status": "deleted", "deleted_at": {"$gt": since, "$lte": until}},
            ]
        }
        return await (await self._coll(MEDIA)).find(query, projection={"object_key": 1}).to_list()

    # Key directory ----------------------------------------------------------------------
    async def key_devices(self, user_id: str) -> list[MongoDoc]:
        """The user's devices (in device id order): public identity keys and when they were published."""
        doc = await (await self._coll(KEYS)).find_one({"_id": user_id})
        devices = (doc or {}).get("devices") or {}
        return [
            {
                "device_id": device_id,
                "identity_key": devices[device_id].get("identity_key"),
                "identity_dh_key": devices[device_id].get("identity_dh_key"),
                "published_at": devices[device_id].get("published_at"),
                "one_time_prekeys_available": devices[device_id].get("one_time_prekeys_available"),
                "highest_key_id": devices[device_id].get("highest_key_id"),
            }
            for device_id in sorted(devices)
        ]

    async def keys_caught_up(self, user_id: str, version: int) -> bool:
        doc = await (await self._coll(KEYS)).find_one(
            {"_id": user_id, "version": {"$gte": version}}, projection={"_id": 1}
        )
        return doc is not None

    # Read-your-writes -------------------------------------------------------------------
    async def conversation_caught_up(self, conversation_id: str, version: int) -> bool:
        doc = await (await self._coll(CONVERSATIONS)).find_one(
            {"_id": conversation_id, "version": {"$gte": version}}, projection={"_id": 1}
        )
        return doc is not None
