"""MongoDB connection (PyMongo's async API)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from infra.settings import Settings

MongoDoc = dict[str, Any]
DUPLICATE_KEY = 11000  # MongoDB's error code for a unique index violation


def only_duplicates(exc: BulkWriteError | DuplicateKeyError) -> bool:
    """Whether every write a bulk (or single) write refused was a duplicate key: already written."""
    if isinstance(exc, DuplicateKeyError):
        return True
    errors = exc.details.get("writeErrors", [])
    return bool(errors) and all(e.get("code") == DUPLICATE_KEY for e in errors)


def mongo_client(settings: Settings, timeout_ms: int = 5000) -> AsyncMongoClient[MongoDoc]:
    return AsyncMongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        uuidRepresentation="standard",
    )


def mongo_db(client: AsyncMongoClient[MongoDoc], settings: Settings) -> AsyncDatabase[MongoDoc]:
    return client[settings.mongo_db]
