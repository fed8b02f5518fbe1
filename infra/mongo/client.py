"""MongoDB connection (PyMongo's async API)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from infra.settings import Settings

MongoDoc = dict[str, Any]


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
