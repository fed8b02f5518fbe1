"""Read-model queries against the real MongoDB, on documents shaped as the projections write them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from infra.mongo.client import mongo_client
from infra.mongo.documents import ProjectionRegistry
from infra.mongo.read_models import ReadModels
from infra.settings import Settings

pytestmark = pytest.mark.integration

ME, YOU, THEM = "user-me", "user-you", "user-them"


@pytest.fixture
async def db(stack_settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client = mongo_client(stack_settings)
    name = f"it_read_models_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def live(db: AsyncDatabase[dict[str, Any]], name: str) -> Any:
    return db[await ProjectionRegistry(db).live_collection(name)]


def conversation(cid: str, participants: list[str], activity: str, last_seq: int, **extra: Any) -> dict[str, Any]:
    return {
        "_id": cid,
        "_sv": 9,
        "_stream": f"conversation:{cid}",
        "conversation_id": cid,
        "kind": "group",
        "title": cid,
        "participant_ids": participants,
        "members": {p: {"role": "member", "joined_seq": 0} for p in participants},
        "created_by": participants[0],
        "created_at": "2026-01-01T00:00:00.000Z",
        "last_message": None,
        "last_seq": last_seq,
        "last_activity_at": activity,
        "read_markers": {},
        "version": 9,
        **extra,
    }


def message(cid: str, seq: int, sender: str, deleted: bool = False) -> dict[str, Any]:
    mid = f"{cid}-m{seq}"
    return {
        "_id": mid,
        "_sv": seq + 1,
        "_stream": f"conversation:{cid}",
        "message_id": mid,
        "conversation_id": cid,
        "seq": seq,
        "sender_id": sender,
        "body": None if deleted else f"body {seq}",
        "format": "plain",
        "sent_at": f"2026-01-01T00:00:{seq:02d}.000Z",
        "edited_at": None,
        "deleted": deleted,
        "reactions": {},
    }


async def test_conversation_list_newest_first_with_unread_counts(db: AsyncDatabase[dict[str, Any]]) -> None:
    conversations = await live(db, "conversations")
    messages = await live(db, "messages")
    await conversations.insert_many(
        [
            conversation("c-old", [ME, YOU], "2026-01-01T00:00:01.000Z", 0),
            conversation("c-new", [ME, YOU], "2026-01-03T00:00:00.000Z", 5, read_markers={ME: 2}),
            conversation("c-mid", [ME, THEM], "2026-01-02T00:00:00.000Z", 1),
            conversation("c-not-mine", [YOU, THEM], "2026-01-04T00:00:00.000Z", 0),
        ]
    )
    await messages.insert_many(
        [
            message("c-new", 1, YOU),
            message("c-new", 2, YOU),
            message("c-new", 3, YOU),  # unread
            message("c-new", 4, ME),  # mine: never unread
            message("c-new", 5, YOU, deleted=True),  # deleted: not counted
            message("c-mid", 1, THEM),  # unread
        ]
    )
    rm = ReadModels(db)
    items = await rm.list_conversations(ME, limit=50, before=None)
    assert [i["conversation_id"] for i in items] == ["c-new", "c-mid", "c-old"]
    assert [i["unread_count"] for i in items] == [1, 1, 0]
    assert set(items[0]) == {
        "conversation_id",
        "kind",
        "title",
        "participant_ids",
        "last_message",
        "last_activity_at",
        "unread_count",
        "version",
        "cursor",
    }
    page = await rm.list_conversations(ME, limit=1, before="2026-01-03T00:00:00.000Z")
    assert [i["conversation_id"] for i in page] == ["c-mid"]


async def test_history_pages_newest_first(db: AsyncDatabase[dict[str, Any]]) -> None:
    messages = await live(db, "messages")
    await messages.insert_many([message("c1", seq, ME) for seq in range(1, 8)] + [message("c2", 1, ME)])
    rm = ReadModels(db)
    first = await rm.history("c1", before_seq=None, limit=3)
    assert [m["seq"] for m in first.messages] == [7, 6, 5] and first.has_more
    assert set(first.messages[0]) == {
        "message_id",
        "seq",
        "sender_id",
        "body",
        "ciphertext",
        "sent_at",
        "edited_at",
        "deleted",
        "reactions",
        "attachments",
    }
    assert first.messages[0]["ciphertext"] is None  # a document written before ciphertext existed
    rest = await rm.history("c1", before_seq=5, limit=10)
    assert [m["seq"] for m in rest.messages] == [4, 3, 2, 1] and not rest.has_more
    exact = await rm.history("c1", before_seq=4, limit=3)
    assert [m["seq"] for m in exact.messages] == [3, 2, 1] and not exact.has_more


async def test_participant_checks_and_users(db: AsyncDatabase[dict[str, Any]]) -> None:
    await (await live(db, "conversations")).insert_one(conversation("c1", [ME, YOU], "2026-01-01T00:00:00.000Z", 0))
    await (await live(db, "users")).insert_one(
        {
            "_id": ME,
            "_sv": 1,
            "_stream": "username:me",
            "user_id": ME,
            "username": "Me",
            "username_normalised": "me",
            "display_name": "Me",
            "password_hash": "$argon2id$secret",
            "registered_at": "2026-01-01T00:00:00.000Z",
        }
    )
    rm = ReadModels(db)
    assert await rm.conversation_of_participant("c1", YOU) is not None
    assert await rm.conversation_of_participant("c1", THEM) is None
    assert await rm.conversation_of_participant("nope", ME) is None
    assert await rm.conversation_caught_up("c1", 9) and not await rm.conversation_caught_up("c1", 10)
    assert await rm.missing_users([ME, YOU, ME, THEM]) == [YOU, THEM]
    assert await rm.user_exists(ME) and not await rm.user_exists(YOU)
    user = await rm.user(ME)
    assert user is not None and "password_hash" not in user and "_id" not in user and "_sv" not in user
    credentials = await rm.credentials("me")
    assert credentials is not None and credentials.password_hash == "$argon2id$secret"
    assert await rm.credentials("nobody") is None


async def test_list_pages_through_equal_activity_times_with_the_cursor(db: AsyncDatabase[dict[str, Any]]) -> None:
    same = "2026-03-01T10:00:00.000Z"
    ids = [f"c{i}" for i in range(5)]
    await (await live(db, "conversations")).insert_many([conversation(cid, [ME], same, 0) for cid in ids])
    read_models = ReadModels(db)
    seen: list[str] = []
    before: tuple[str | None, str | None] = (None, None)
    for _ in range(5):
        page = await read_models.list_conversations(ME, 2, *before)
        if not page:
            break
        seen += [item["conversation_id"] for item in page]
        time, _, last_id = page[-1]["cursor"].partition("|")
        before = (time, last_id)
    assert sorted(seen) == ids and len(seen) == len(set(seen)), "every conversation exactly once"


async def test_conversation_partners_are_the_current_participants_of_the_users_conversations(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    from infra.mongo.partners import MongoConversationPartners

    conversations = await live(db, "conversations")
    await conversations.insert_many(
        [
            conversation("c1", [ME, YOU], "2026-01-01T00:00:01.000Z", 0),
            conversation("c2", [ME, "user-x", "user-y"], "2026-01-01T00:00:02.000Z", 0),
            conversation("c3", [YOU, THEM], "2026-01-01T00:00:03.000Z", 0),
        ]
    )
    partners = MongoConversationPartners(db, ProjectionRegistry(db))
    assert await partners.of(ME) == {ME, YOU, "user-x", "user-y"}
    assert await partners.of(THEM) == {YOU, THEM}
    assert await partners.of("user-alone") == set()


async def test_key_devices_and_keys_caught_up(db: AsyncDatabase[dict[str, Any]]) -> None:
    keys = await live(db, "keys")
    device = {
        "device_id": "phone",
        "identity_key": "IK",
        "identity_dh_key": None,
        "signed_prekey": {"key_id": 1, "public_key": "SPK", "signature": "SIG"},
        "published_at": "2026-01-01T00:00:00.000Z",
        "one_time_prekeys_available": 4,
        "highest_key_id": 9,
    }
    doc = {"_id": ME, "_sv": 3, "_stream": f"keys:{ME}", "user_id": ME, "version": 3}
    await keys.insert_one({**doc, "devices": {"phone": device, "laptop": {**device, "device_id": "laptop"}}})
    models = ReadModels(db)
    found = await models.key_devices(ME)
    assert [d["device_id"] for d in found] == ["laptop", "phone"]
    assert found[1] == {k: v for k, v in device.items() if k != "signed_prekey"}
    assert await models.key_devices(YOU) == []
    assert await models.keys_caught_up(ME, 3) and not await models.keys_caught_up(ME, 4)
