"""media:* over sockets against the running platform, with uploads and downloads over real HTTP
to the local S3 server through the presigned URLs."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from infra.media_sweeper import MediaSweeper
from infra.mongo.client import mongo_client, mongo_db
from infra.mongo.documents import ProjectionRegistry
from infra.mongo.read_models import ReadModels
from infra.objects import S3ObjectStore
from infra.settings import Settings
from tests.conftest import Platform
from tests.e2e.conftest import Session, Users, parley

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(200)


async def group(owner: Session, others: list[Session]) -> str:
    ids = [o.user_id for o in others]
    created = await owner.ok("conversation:create", {"kind": "group", "participant_ids": ids, "title": "files"})
    conversation_id: str = created["conversation_id"]
    return conversation_id


async def request(session: Session, conv: str, body: bytes = PNG, **over: Any) -> dict[str, Any]:
    payload = {"conversation_id": conv, "filename": "cat.png", "content_type": "image/png", "size": len(body), **over}
    return await session.ok("media:request-upload", payload)


async def put(upload: dict[str, Any], body: bytes, content_type: str = "image/png") -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.put(upload["upload_url"], content=body, headers={"Content-Type": content_type})
    return r.status_code


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url)


async def uploaded(session: Session, conv: str, body: bytes = PNG) -> str:
    upload = await request(session, conv, body)
    assert await put(upload, body) == 200
    media_id: str = upload["media_id"]
    return media_id


async def test_upload_complete_attach_download_and_delete(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    upload = await request(alice, conv)
    assert upload["method"] == "PUT" and upload["headers"] == {"Content-Type": "image/png"}
    assert upload["expires_at"] > datetime.now(UTC).isoformat()[:19]
    media_id = upload["media_id"]
    assert await bob.error("media:get-download-url", {"media_id": media_id}) == "not_found", "not uploaded yet"
    assert await put(upload, PNG) == 200
    done = await alice.ok("media:upload-complete", {"media_id": media_id})
    assert {k: done[k] for k in ("media_id", "status", "size", "content_type")} == {
        "media_id": media_id,
        "status": "ready",
        "size": len(PNG),
        "content_type": "image/png",
    }
    ready = await bob.inbox.wait_for("media:ready", lambda d: d["media_id"] == media_id)
    assert ready["conversation_id"] == conv

    sent = await alice.ok("message:send", {"conversation_id": conv, "body": "a cat", "media_ids": [media_id]})
    attachment = {"media_id": media_id, "filename": "cat.png", "content_type": "image/png", "size": len(PNG)}
    pushed = await bob.inbox.wait_for("message:new", lambda d: d["message_id"] == sent["message_id"])
    assert pushed["attachments"] == [attachment]
    history = await bob.ok("message:history", {"conversation_id": conv})
    assert history["messages"][0]["attachments"] == [attachment]

    link = await bob.ok("media:get-download-url", {"media_id": media_id})
    r = await get(link["url"])
    assert r.status_code == 200 and r.content == PNG

    assert await bob.error("media:delete", {"media_id": media_id}) == "forbidden", "owner only"
    await alice.ok("media:delete", {"media_id": media_id})
    assert await bob.error("media:get-download-url", {"media_id": media_id}) == "not_found"
    assert await alice.error("media:get-download-url", {"media_id": media_id}) == "not_found"
    assert (await get(link["url"])).status_code == 404, "the object is gone"
    history = await bob.ok("message:history", {"conversation_id": conv})
    assert history["messages"][0]["attachments"] == [], "every reference goes with it"


async def test_completion_checks_the_object_itself(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    upload = await request(alice, conv)
    assert await alice.error("media:upload-complete", {"media_id": upload["media_id"]}) == "invalid", "nothing there"
    assert await put(upload, PNG[:-1]) == 200
    assert await alice.error("media:upload-complete", {"media_id": upload["media_id"]}) == "invalid", "short"
    assert await put(upload, PNG, content_type="image/gif") == 200
    assert await alice.error("media:upload-complete", {"media_id": upload["media_id"]}) == "invalid", "type"
    assert await put(upload, PNG) == 200
    assert await bob.error("media:upload-complete", {"media_id": upload["media_id"]}) == "forbidden"
    await alice.ok("media:upload-complete", {"media_id": upload["media_id"]})
    message = {"conversation_id": conv, "body": "not yours", "media_ids": [upload["media_id"]]}
    assert await bob.error("message:send", message) == "forbidden"


async def test_limits_and_bad_input(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    base = {"conversation_id": conv, "filename": "a.png", "content_type": "image/png", "size": 10}
    for bad in (
        {"size": 10**12},
        {"size": 0},
        {"size": "10"},
        {"content_type": "application/x-msdownload"},
        {"filename": "../../etc/passwd"},
        {"conversation_id": "not-a-uuid"},
    ):
        assert await alice.error("media:request-upload", {**base, **bad}) == "invalid", bad
    assert await alice.error("media:upload-complete", {"media_id": "no-such-media"}) == "not_found"
    assert await alice.error("media:get-download-url", {"media_id": 7}) == "invalid"
    stranger = await users.new()
    assert await stranger.error("media:request-upload", base) == "not_found"


async def test_a_retried_request_gets_the_same_upload(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    payload = {"conversation_id": conv, "filename": "a.png", "content_type": "image/png", "size": len(PNG)}
    command_id = "6b1e3c1e-3f5e-4b8e-9b1a-0d6a5d7f0c11"
    first = await alice.ok("media:request-upload", {**payload, "command_id": command_id})
    again = await alice.ok("media:request-upload", {**payload, "command_id": command_id})
    assert again["media_id"] == first["media_id"] and again["version"] == first["version"]
    assert await put(again, PNG) == 200, "the URL of the retry is for the same object"
    await alice.ok("media:upload-complete", {"media_id": first["media_id"]})


async def test_a_removed_participant_is_refused_at_once(users: Users) -> None:
    """The cached allowed decision (300 s) ends with the removal's ack, not at its expiry."""
    alice, bob, carol = await users.new(), await users.new(), await users.new()
    conv = await group(alice, [bob, carol])
    media_id = await uploaded(alice, conv)
    await alice.ok("media:upload-complete", {"media_id": media_id})
    for _ in range(2):  # the second answer comes from the cache
        await bob.ok("media:get-download-url", {"media_id": media_id})
    await alice.ok("conversation:remove-participant", {"conversation_id": conv, "user_id": bob.user_id})
    assert await bob.error("media:get-download-url", {"media_id": media_id}) == "not_found"
    await carol.ok("conversation:leave", {"conversation_id": conv})
    assert await carol.error("media:get-download-url", {"media_id": media_id}) == "not_found"
    await alice.ok("media:get-download-url", {"media_id": media_id})


async def test_an_expired_upload_is_never_completed_and_its_object_is_swept(
    users: Users, stack_settings: Settings
) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    upload = await request(alice, conv)
    assert await put(upload, PNG) == 200
    client = mongo_client(stack_settings)
    try:
        db = mongo_db(client, stack_settings)
        views = ReadModels(db)
        doc = await views.media(upload["media_id"])
        assert doc is not None and doc["status"] == "pending"
        objects = S3ObjectStore(stack_settings)
        assert await objects.stat(doc["object_key"]) is not None
        later = datetime.fromisoformat(doc["expires_at"]) + timedelta(seconds=1)
        # Its own cursor: a sweep "in the future" must not move the live workers' cursor.
        cursors = client[f"test_sweep_{upload['media_id'][:8]}"]
        removed = await MediaSweeper(stack_settings, views, objects, cursors).sweep(now=later)
        await client.drop_database(cursors.name)
        assert removed >= 1
        assert await objects.stat(doc["object_key"]) is None
    finally:
        await client.close()
    assert await bob.error("media:get-download-url", {"media_id": upload["media_id"]}) == "not_found"


async def test_concurrent_completions_answer_alike(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    media_id = await uploaded(alice, conv)
    acks = await asyncio.gather(*(alice.call("media:upload-complete", {"media_id": media_id}) for _ in range(4)))
    assert all(a["ok"] for a in acks) and len({a["data"]["status"] for a in acks}) == 1


async def test_rebuilding_media_gives_the_same_view_and_the_same_downloads(platform: Platform, users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    ready, gone = await uploaded(alice, conv), await uploaded(alice, conv)
    for media_id in (ready, gone):
        await alice.ok("media:upload-complete", {"media_id": media_id})
    pending = (await request(alice, conv))["media_id"]
    await alice.ok("media:delete", {"media_id": gone})

    client = mongo_client(platform.settings)
    try:
        db = mongo_db(client, platform.settings)
        registry = ProjectionRegistry(db, cache_seconds=0)
        ids = {"_id": {"$in": [ready, gone, pending]}}
        before_collection = await registry.live_collection("media")
        before = await db[before_collection].find(ids).sort("_id").to_list()
        assert sorted(d["status"] for d in before) == ["deleted", "pending", "ready"]

        rebuilt = parley(platform, "projections", "rebuild", "media")
        assert rebuilt.returncode == 0, rebuilt.stderr
        after_collection = await registry.live_collection("media")
        assert after_collection != before_collection
        assert await db[after_collection].find(ids).sort("_id").to_list() == before
    finally:
        await client.close()

    url = (await bob.ok("media:get-download-url", {"media_id": ready}))["url"]
    assert (await get(url)).content == PNG
    for media_id in (gone, pending):
        assert await bob.error("media:get-download-url", {"media_id": media_id}) == "not_found"
