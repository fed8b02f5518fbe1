"""Every MongoDB index the platform needs, created idempotently (by `infra.provision` at start).

The projections' live collections get their projection's indexes, the trail gets its
(chain, seq) uniqueness and its query indexes, the registry's positions theirs.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from infra.mongo.audit_trail import AuditTrail
from infra.mongo.documents import DocumentStore, ProjectionRegistry, ensure_registry_indexes


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Create every index; safe to call on every start."""
    from projections.catalog import DOCUMENT_PROJECTIONS

    await ensure_registry_indexes(db)
    registry = ProjectionRegistry(db)
    await AuditTrail(db, registry=registry).ensure_indexes()
    for name, projection in DOCUMENT_PROJECTIONS.items():
        collection = await registry.live_collection(name)
        await DocumentStore(db[collection], projection).ensure_indexes()
