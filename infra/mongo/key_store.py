"""The key store's MongoDB adapter: one document per user in a database of its own.

``{_id: user_id, wrapped: <bytes>, created_at}``, and after erasure ``{_id, erased_at}`` (the
tombstone: the wrapped key is gone and can never be created again). Writes wait for a majority:
an event is sealed under a key only once the key is durable, and an erasure is reported only
once the key is gone from a majority. The database (``Settings.key_store_database``) is not a
read model: nothing drops or rebuilds it, and a backup of it is a backup of every key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from datetime import UTC, datetime

from pymongo import AsyncMongoClient, WriteConcern
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from infra.mongo.client import MongoDoc
from infra.security.shredding import KeyRing, StoredKey
from infra.settings import Settings

COLLECTION = "user_keys"


class MongoKeyStore:
    def __init__(self, db: AsyncDatabase[MongoDoc]) -> None:
        self._keys = db.get_collection(COLLECTION, write_concern=WriteConcern("majority"))

    async def load(self, user_ids: Collection[str]) -> dict[str, StoredKey]:
        ids = list(user_ids)
        if not ids:
            return {}
        return {str(doc["_id"]): _record(doc) async for doc in self._keys.find({"_id": {"$in": ids}})}

    async def create(self, user_id: str, wrapped: bytes) -> StoredKey:
        try:
            await self._keys.insert_one({"_id": user_id, "wrapped": wrapped, "created_at": datetime.now(UTC)})
        except DuplicateKeyError:  # another worker created it first, or it is erased: theirs stands
            doc = await self._keys.find_one({"_id": user_id})
            if doc is None:
                raise
            return _record(doc)
        return StoredKey(user_id, wrapped)

    async def destroy(self, user_id: str) -> None:
        with contextlib.suppress(DuplicateKeyError):  # erased before: the tombstone stands
            await self._keys.update_one(
                {"_id": user_id, "erased_at": {"$exists": False}},
                {"$unset": {"wrapped": "", "created_at": ""}, "$set": {"erased_at": datetime.now(UTC)}},
                upsert=True,
            )


def _record(doc: MongoDoc) -> StoredKey:
    wrapped = doc.get("wrapped")
    return StoredKey(str(doc["_id"]), bytes(wrapped) if wrapped is not None and "erased_at" not in doc else None)


class KeysNotConfigured(SystemExit):
    """No master key: nothing could seal or open personal data (a clear exit, not a traceback)."""


def keys_required(settings: Settings) -> None:
    if not settings.master_key:
        raise KeysNotConfigured(
            "PARLEY_MASTER_KEY is not set: it wraps every user's data key (docs/THREAT-MODEL.md); "
            "`parley up` keeps one in its data dir, production sets it"
        )


def key_ring(settings: Settings, client: AsyncMongoClient[MongoDoc]) -> KeyRing:
    """The users' data keys, in the key store's own database."""
    keys_required(settings)
    return KeyRing(MongoKeyStore(client[settings.key_store_database]), settings.master_key)
