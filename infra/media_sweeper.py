"""Removes the objects of expired uploads and deleted media (a timer of every worker).

A pending upload past its expiry can never be completed (the domain refuses it), and a deleted
media item can never be downloaded (the gateway refuses it), so their objects are garbage. The
sweep reads the media read model for what became garbage since its last pass, removes those
objects (removal is idempotent, so several workers sweeping at once do no harm) and then moves
its cursor, kept in ``media_sweep`` beside the read models. A pass that fails leaves the cursor
where it was: the next pass tries the same objects again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from domain.envelope import iso
from infra.settings import Settings

log = logging.getLogger("parley.worker.media")

CURSOR = "media_sweep"
EPOCH = "1970-01-01T00:00:00.000Z"


class GarbageMedia(Protocol):
    async def media_due_for_removal(self, since: str, until: str) -> list[dict[str, Any]]: ...


class Objects(Protocol):
    async def remove(self, key: str) -> None: ...


class MediaSweeper:
    def __init__(self, settings: Settings, views: GarbageMedia, objects: Objects, db: Any) -> None:
        self._settings = settings
        self._views = views
        self._objects = objects
        self._cursors = db[CURSOR]

    async def sweep(self, now: datetime | None = None) -> int:
        """One pass; the number of objects removed."""
        until = iso(now or datetime.now(UTC))
        doc = await self._cursors.find_one({"_id": "cursor"})
        since = str(doc["until"]) if doc else EPOCH
        if until <= since:
            return 0
        due = await self._views.media_due_for_removal(since, until)
        for media in due:
            await self._objects.remove(str(media["object_key"]))
        await self._cursors.update_one({"_id": "cursor"}, {"$set": {"until": until}}, upsert=True)
        if due:
            log.info("removed %d media objects (expired uploads and deleted media)", len(due))
        return len(due)
