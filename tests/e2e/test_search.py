"""search:* over sockets against the running platform: found once acked, edits, deletes, renames,
scope, the cache never serving what the caller should no longer (or already should) see, rebuild."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import Platform
from tests.e2e.conftest import Session, Users, parley

pytestmark = pytest.mark.e2e


def word() -> str:
    """A word no other test writes (letters only: the analyser splits on digits and letters alike)."""
    return "w" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12])


async def group(owner: Session, others: list[Session], title: str = "a group") -> str:
    created = await owner.ok(
        "conversation:create", {"kind": "group", "participant_ids": [o.user_id for o in others], "title": title}
    )
    conversation_id: str = created["conversation_id"]
    return conversation_id


async def hits(session: Session, event: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    data = await session.ok(event, payload)
    found: list[dict[str, Any]] = data["hits"]
    return found


async def test_a_sent_message_is_found_as_soon_as_it_is_acked(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    w = word()
    sent = await alice.ok("message:send", {"conversation_id": conv, "body": f"Meet at the <b>{w}</b> café at noon"})
    (hit,) = await hits(bob, "search:messages", {"query": w})  # no waiting: the ack vouches for the index
    assert hit == {
        "message_id": sent["message_id"],
        "conversation_id": conv,
        "seq": sent["seq"],
        "sender_id": alice.user_id,
        "snippet": hit["snippet"],
        "sent_at": sent["sent_at"],
    }
    assert f"<em>{w}</em>" in hit["snippet"] and "<b>" not in hit["snippet"] and "&lt;b&gt;" in hit["snippet"]
    assert await hits(bob, "search:messages", {"query": w, "conversation_id": conv}) == [hit]


async def test_edit_reindexes_and_delete_removes(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    old, new = word(), word()
    sent = await alice.ok("message:send", {"conversation_id": conv, "body": f"first {old}"})
    assert len(await hits(bob, "search:messages", {"query": old})) == 1
    await alice.ok("message:edit", {"conversation_id": conv, "message_id": sent["message_id"], "body": f"then {new}"})
    assert await hits(bob, "search:messages", {"query": old}) == []
    assert [h["message_id"] for h in await hits(bob, "search:messages", {"query": new})] == [sent["message_id"]]
    await alice.ok("message:delete", {"conversation_id": conv, "message_id": sent["message_id"]})
    assert await hits(bob, "search:messages", {"query": new}) == []
    assert await hits(alice, "search:messages", {"query": new}) == []


async def test_a_renamed_conversation_is_found_by_its_new_title(users: Users) -> None:
    alice, bob, carol = await users.new(), await users.new(), await users.new()
    old, new = word(), word()
    conv = await group(alice, [bob], f"Project {old}")
    assert await hits(bob, "search:conversations", {"query": old}) == [
        {"conversation_id": conv, "title": f"Project {old}", "kind": "group"}
    ]
    await alice.ok("conversation:rename", {"conversation_id": conv, "title": f"Project {new}"})
    assert await hits(bob, "search:conversations", {"query": old}) == []
    assert [h["title"] for h in await hits(bob, "search:conversations", {"query": new})] == [f"Project {new}"]
    assert await hits(carol, "search:conversations", {"query": new}) == []  # not hers


async def test_a_removed_participant_stops_finding_at_once_despite_the_cache(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    w = word()
    conv = await group(alice, [bob], f"Room {w}")
    await alice.ok("message:send", {"conversation_id": conv, "body": f"about {w}"})
    for _ in range(2):  # the second answer comes from the cache
        assert len(await hits(bob, "search:messages", {"query": w})) == 1
        assert len(await hits(bob, "search:conversations", {"query": w})) == 1
    await alice.ok("conversation:remove-participant", {"conversation_id": conv, "user_id": bob.user_id})
    assert await hits(bob, "search:messages", {"query": w}) == []
    assert await hits(bob, "search:conversations", {"query": w}) == []
    assert await bob.error("search:messages", {"query": w, "conversation_id": conv}) == "not_found"
    assert len(await hits(alice, "search:messages", {"query": w})) == 1


async def test_own_just_sent_message_is_found_despite_a_cached_identical_query(users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    conv = await group(alice, [bob])
    w = word()
    assert await hits(alice, "search:messages", {"query": w}) == []  # cached: nothing
    assert await hits(alice, "search:messages", {"query": w}) == []
    sent = await alice.ok("message:send", {"conversation_id": conv, "body": w})
    assert [h["message_id"] for h in await hits(alice, "search:messages", {"query": w})] == [sent["message_id"]]


async def test_a_stranger_learns_nothing(users: Users) -> None:
    alice, bob, stranger = await users.new(), await users.new(), await users.new()
    conv = await group(alice, [bob])
    w = word()
    await alice.ok("message:send", {"conversation_id": conv, "body": w})
    assert await hits(stranger, "search:messages", {"query": w}) == []
    assert await stranger.error("search:messages", {"query": w, "conversation_id": conv}) == "not_found"
    # The same answer as for a conversation that does not exist: no existence leak.
    assert await stranger.error("search:messages", {"query": w, "conversation_id": str(uuid.uuid4())}) == "not_found"


async def test_users_are_found_by_username_prefix_and_display_name(users: Users) -> None:
    w = word()
    ada = await users.new(display_name=f"Ada {w}")
    searcher = await users.new()
    by_name = await hits(searcher, "search:users", {"query": w})
    assert by_name == [{"user_id": ada.user_id, "username": ada.username, "display_name": f"Ada {w}"}]
    by_prefix = await hits(searcher, "search:users", {"query": ada.username[:9]})
    assert ada.user_id in [h["user_id"] for h in by_prefix]
    for h in by_prefix:
        assert set(h) == {"user_id", "username", "display_name"}  # never a password hash


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"query": ""},
        {"query": "   "},
        {"query": "x" * 257},
        {"query": 5},
        {"query": "ok", "limit": 0},
        {"query": "ok", "limit": 51},
        {"query": "ok", "limit": "10"},
        {"query": "ok", "conversation_id": ""},
    ],
)
async def test_invalid_payloads(users: Users, payload: dict[str, Any]) -> None:
    session = await users.new()
    for event in ("search:messages", "search:conversations", "search:users"):
        if event != "search:messages" and "conversation_id" in payload:
            continue
        assert await session.error(event, payload) == "invalid", event


async def test_limit_bounds_the_hits(users: Users) -> None:
    alice = await users.new()
    conv = await group(alice, [await users.new()])
    w = word()
    for i in range(4):
        await alice.ok("message:send", {"conversation_id": conv, "body": f"{w} number {i}"})
    assert len(await hits(alice, "search:messages", {"query": w, "limit": 3})) == 3
    assert len(await hits(alice, "search:messages", {"query": w})) == 4
    assert len(await hits(alice, "search:messages", {"query": "x" * 256, "limit": 50})) == 0


async def test_rebuilding_search_gives_the_same_results(platform: Platform, users: Users) -> None:
    alice, bob = await users.new(), await users.new()
    w, edited = word(), word()
    conv = await group(alice, [bob], f"Rebuild {w}")
    kept = await alice.ok("message:send", {"conversation_id": conv, "body": f"kept {w}"})
    changed = await alice.ok("message:send", {"conversation_id": conv, "body": f"changed {w}"})
    gone = await alice.ok("message:send", {"conversation_id": conv, "body": f"gone {w}"})
    await alice.ok("message:edit", {"conversation_id": conv, "message_id": changed["message_id"], "body": edited})
    await alice.ok("message:delete", {"conversation_id": conv, "message_id": gone["message_id"]})

    async def results() -> list[Any]:
        return [
            await hits(bob, "search:messages", {"query": w}),
            await hits(bob, "search:messages", {"query": edited}),
            await hits(bob, "search:conversations", {"query": w}),
            await hits(bob, "search:users", {"query": alice.username}),
        ]

    before = await results()
    assert [h["message_id"] for h in before[0]] == [kept["message_id"]]
    status = json.loads(parley(platform, "projections", "status", "--json").stdout)
    generation = next(row["generation"] for row in status if row["name"] == "search")

    rebuilt = parley(platform, "projections", "rebuild", "search")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith(f"rebuilt search into {platform.settings.topic_prefix}-*-v{generation + 1}")
    await alice.ok("message:read", {"conversation_id": conv, "seq": 1})  # moves the version: no cached answers
    assert await results() == before

    status = json.loads(parley(platform, "projections", "status", "--json").stdout)
    row = next(row for row in status if row["name"] == "search")
    assert row["generation"] == generation + 1 and row["documents"] > 0 and row["lag"] >= 0


async def test_search_has_its_own_rate_limit(platform: Platform, users: Users) -> None:
    limit = platform.settings.rate_limits.search
    assert limit.limit <= 100, "the test sends one more than the limit"
    alice, bob = await users.new(), await users.new()
    acks = [await alice.call("search:users", {"query": "nobody"}) for _ in range(limit.limit + 1)]
    assert all(ack["ok"] for ack in acks[: limit.limit - 1])
    refused = [ack for ack in acks if not ack["ok"]]
    assert refused, "over the limit, a search is refused"
    error = refused[0]["error"]
    assert error["code"] == "rate_limited" and 0 < error["retry_after"] <= limit.period_s
    for event in ("search:messages", "search:conversations"):  # one class for every search:* event
        assert await alice.error(event, {"query": "nobody"}) == "rate_limited"
    assert "conversations" in await alice.ok("conversation:list", {})  # other classes are counted apart
    assert (await bob.call("search:users", {"query": "nobody"}))["ok"] is True  # per user
