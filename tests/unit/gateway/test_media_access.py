"""The gateway's media use cases (api/media.py) over the in-memory fakes of their ports."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.media import MediaAccess, MediaRefused, plan_upload
from infra.authz_cache import InMemoryAuthzCache
from infra.objects import InMemoryObjectStore
from infra.settings import Settings

SETTINGS = Settings(media_max_bytes=1000, media_content_types=("image/png",))


class Views:
    """The media and conversations read models, as dicts a test edits."""

    def __init__(self) -> None:
        self.media_docs: dict[str, dict[str, Any]] = {}
        self.participants: dict[str, set[str]] = {}
        self.reads = 0

    async def media(self, media_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.media_docs.get(media_id)

    async def conversation_of_participant(self, conversation_id: str, user_id: str) -> dict[str, Any] | None:
        members = self.participants.get(conversation_id, set())
        return {"_id": conversation_id} if user_id in members else None


@pytest.fixture
def world() -> tuple[MediaAccess, Views, InMemoryObjectStore, InMemoryAuthzCache]:
    views, objects, cache = Views(), InMemoryObjectStore(), InMemoryAuthzCache()
    views.participants["c1"] = {"alice", "bob"}
    views.media_docs["m1"] = {
        "_id": "m1",
        "conversation_id": "c1",
        "uploader_id": "alice",
        "object_key": "media/k1",
        "filename": "cat.png",
        "status": "ready",
    }
    return MediaAccess(SETTINGS, views, objects, cache), views, objects, cache


def test_plan_upload_checks_size_and_type_and_picks_unguessable_keys() -> None:
    plans = [plan_upload(SETTINGS, "image/png", 1000) for _ in range(2)]
    assert plans[0].media_id != plans[1].media_id and plans[0].object_key != plans[1].object_key
    assert len(plans[0].object_key) >= 30 and plans[0].expires_in_s == SETTINGS.media_upload_ttl_s
    with pytest.raises(MediaRefused, match="at most 1000 bytes"):
        plan_upload(SETTINGS, "image/png", 1001)
    with pytest.raises(MediaRefused, match="content_type"):
        plan_upload(SETTINGS, "text/html", 10)


async def test_a_participant_downloads_and_the_decision_is_cached(world: Any) -> None:
    access, views, objects, _ = world
    assert (await access.upload_url("media/k1")).startswith("http://objects.test/media/k1")
    async with httpx.AsyncClient(transport=objects.transport()) as http:
        await http.put(await access.upload_url("media/k1"), content=b"png!", headers={"Content-Type": "image/png"})
        got = await access.download_url("bob", "m1")
        assert got["media_id"] == "m1" and (await http.get(got["url"])).content == b"png!"
    reads = views.reads
    await access.download_url("bob", "m1")
    assert views.reads == reads  # the cached decision answered


async def test_removal_and_deletion_take_effect_despite_the_cache(world: Any) -> None:
    access, views, _, cache = world
    await access.download_url("bob", "m1")
    views.participants["c1"].discard("bob")  # the read model shows the removal ...
    await access.download_url("bob", "m1")  # ... but the cached decision still allows
    await cache.forget_conversation("c1")  # what the worker does before it announces the removal
    with pytest.raises(MediaRefused) as refused:
        await access.download_url("bob", "m1")
    assert refused.value.code == "not_found"

    await access.download_url("alice", "m1")
    views.media_docs["m1"]["status"] = "deleted"
    await cache.forget_media("m1")
    with pytest.raises(MediaRefused):
        await access.download_url("alice", "m1")


async def test_strangers_pending_and_unknown_media_are_all_not_found(world: Any) -> None:
    access, views, _, _ = world
    views.media_docs["m2"] = {**views.media_docs["m1"], "_id": "m2", "status": "pending"}
    for user, media_id in (("eve", "m1"), ("alice", "m2"), ("bob", "m2"), ("alice", "nope")):
        with pytest.raises(MediaRefused) as refused:
            await access.download_url(user, media_id)
        assert (refused.value.code, refused.value.message) == ("not_found", "media not found")


async def test_the_uploader_keeps_access_after_leaving(world: Any) -> None:
    access, views, _, cache = world
    views.participants["c1"].discard("alice")
    await cache.forget_conversation("c1")
    assert (await access.download_url("alice", "m1"))["media_id"] == "m1"
