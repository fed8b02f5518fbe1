"""Who shares a conversation with a user, from the conversations read model (the worker's
``keys:changed`` pushes go to them)."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from infra.mongo.client import MongoDoc
from infra.mongo.documents import ProjectionRegistry

CONVERSATIONS = "conversations"


class MongoConversationPartners:
    def __init__(self, db: AsyncDatabase[MongoDoc], registry: ProjectionRegistry) -> None:
        self._db = db
        self._registry = registry

    async def of(self, user_id: str) -> set[str]:
        """The current participants of every conversation ``user_id`` is a current participant of
        (the user included when in any)."""
        collection = self._db[await self._registry.live_collection(CONVERSATIONS)]
        values = await collection.distinct("participant_ids", {"participant_ids": user_id})
        return {str(v) for v in values}
