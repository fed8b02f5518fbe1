"""MongoDB indexes of the read models (created idempotently by `infra.provision`)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Create every read-model index; safe to call on every start (none yet)."""
