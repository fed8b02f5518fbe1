"""A restart on the same data dir loses nothing a user can see, command ids stay idempotent, and a
read store dropped meanwhile is rebuilt from the log at start."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra.mongo.documents import ProjectionRegistry
from tests.conftest import Platform
from tests.e2e.conftest import PASSWORD, Users, connect, login

pytestmark = [pytest.mark.e2e, pytest.mark.restart]


async def test_restart_keeps_users_conversations_messages_and_idempotency(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as http:
        users = Users(platform.base_url, http)
        alice, bob = await users.new(), await users.new()
        created = await alice.ok(
            "conversation:create", {"kind": "group", "participant_ids": [bob.user_id], "title": "kept"}
        )
        conv = created["conversation_id"]
        command_id = str(uuid.uuid4())
        first = await alice.ok(
            "message:send", {"conversation_id": conv, "body": "before restart", "command_id": command_id}
        )
        await bob.ok("message:read", {"conversation_id": conv, "seq": first["seq"]})
        history_before = await bob.ok("message:history", {"conversation_id": conv})
        listed_before = await alice.ok("conversation:list", {})
        await users.close()

    # A read store dropped while down is rebuilt from the log when the platform starts.
    settings = platform.settings
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    try:
        db = mongo[settings.mongo_db]
        await db.drop_collection(await ProjectionRegistry(db, cache_seconds=0).live_collection("messages"))
    finally:
        await mongo.close()

    platform.restart()  # blocking on purpose: `parley up` is tied to the main thread

    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as http:
        # The old access token still opens a socket: the token secret was kept.
        old_socket = await connect(platform.base_url, alice.access_token)
        again = await old_socket.call(
            "message:send",
            {"conversation_id": conv, "body": "before restart", "command_id": command_id},
            timeout=30,
        )
        assert again["ok"] is True and again["data"] == first, "same command_id, same ack, across a worker restart"
        await old_socket.disconnect()

        assert (await login(http, alice.username, PASSWORD)).status_code == 200
        assert (await login(http, bob.username, "wrong password")).status_code == 401
        users = Users(platform.base_url, http)
        try:
            await users.connect(alice)
            await users.connect(bob)
            assert await bob.ok("message:history", {"conversation_id": conv}) == history_before
            listed = await alice.ok("conversation:list", {})
            mine = [c for c in listed["conversations"] if c["conversation_id"] == conv]
            assert mine == [c for c in listed_before["conversations"] if c["conversation_id"] == conv]
            after = await alice.ok("message:send", {"conversation_id": conv, "body": "after restart"})
            assert after["seq"] == first["seq"] + 1
            pushed = await bob.inbox.wait_for("message:new", lambda d: d["message_id"] == after["message_id"])
            assert pushed["body"] == "after restart"
        finally:
            await users.close()
