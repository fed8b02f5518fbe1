"""Socket.IO against the running platform: auth, commands, queries, pushes, typing, errors."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import socketio

from infra.security.tokens import TokenService
from tests.conftest import Platform
from tests.e2e.conftest import Session, Users, connect

pytestmark = pytest.mark.e2e

QUIET_S = 1.0  # how long "nothing arrives" is watched for


async def direct(a: Session, b: Session) -> tuple[str, int]:
    data = await a.ok("conversation:create", {"kind": "direct", "participant_ids": [b.user_id]})
    return data["conversation_id"], data["version"]


# -- connecting ---------------------------------------------------------------------------------


def tokens_of(platform: Platform) -> TokenService:
    s = platform.settings
    return TokenService(s.jwt_secret, s.jwt_algorithm, s.access_token_ttl_s, s.refresh_token_ttl_s)


async def assert_refused(base_url: str, token: str | None) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        client = await connect(base_url, token)
        await client.disconnect()


async def test_connect_refused_without_a_token(base_url: str) -> None:
    await assert_refused(base_url, None)


async def test_connect_refused_with_a_forged_token(base_url: str) -> None:
    forged = TokenService("not-the-platform-secret-0123456789abc", "HS256", 900, 900).issue(str(uuid.uuid4()), "access")
    await assert_refused(base_url, forged)
    await assert_refused(base_url, "not.a.token")


async def test_connect_refused_with_an_expired_token(platform: Platform, users: Users) -> None:
    session = await users.new(connected=False)
    expired = tokens_of(platform).issue(session.user_id, "access", now=time.time() - 86400)
    await assert_refused(platform.base_url, expired)


async def test_connect_refused_with_a_refresh_token(users: Users) -> None:
    session = await users.new(connected=False)
    await assert_refused(users.base_url, session.refresh_token)


# -- a conversation between two users -------------------------------------------------------------


async def test_direct_conversation_message_flow(users: Users) -> None:
    a, b, outsider = await users.new(), await users.new(), await users.new()
    conversation_id, version = await direct(a, b)
    assert version >= 1
    again = await a.ok("conversation:create", {"kind": "direct", "participant_ids": [b.user_id]})
    assert again["conversation_id"] == conversation_id  # the pair has one direct conversation
    reverse = await b.ok("conversation:create", {"kind": "direct", "participant_ids": [a.user_id]})
    assert reverse["conversation_id"] == conversation_id

    sent = await a.ok("message:send", {"conversation_id": conversation_id, "body": "hello b"})
    assert set(sent) >= {"message_id", "seq", "sent_at", "version"} and sent["seq"] == 1

    pushed = await b.inbox.wait_for("message:new", lambda d: d["message_id"] == sent["message_id"])
    assert pushed["conversation_id"] == conversation_id
    assert (pushed["sender_id"], pushed["body"], pushed["seq"]) == (a.user_id, "hello b", 1)

    history = await b.ok("message:history", {"conversation_id": conversation_id})
    assert history["has_more"] is False
    (message,) = history["messages"]
    assert message == {
        "message_id": sent["message_id"],
        "seq": 1,
        "sender_id": a.user_id,
        "body": "hello b",
        "ciphertext": None,
        "sent_at": sent["sent_at"],
        "edited_at": None,
        "deleted": False,
        "reactions": {},
        "attachments": [],
    }

    listed = await b.ok("conversation:list", {})
    item = next(c for c in listed["conversations"] if c["conversation_id"] == conversation_id)
    assert item["kind"] == "direct" and sorted(item["participant_ids"]) == sorted([a.user_id, b.user_id])
    assert item["unread_count"] == 1
    assert item["last_message"]["message_id"] == sent["message_id"]
    assert item["last_message"]["body"] == "hello b"
    assert item["version"] == sent["version"]
    mine = await a.ok("conversation:list", {})
    assert next(c for c in mine["conversations"] if c["conversation_id"] == conversation_id)["unread_count"] == 0

    await b.ok("message:read", {"conversation_id": conversation_id, "seq": 1})
    listed = await b.ok("conversation:list", {})
    assert next(c for c in listed["conversations"] if c["conversation_id"] == conversation_id)["unread_count"] == 0

    await asyncio.sleep(QUIET_S)
    assert all(d["conversation_id"] != conversation_id for d in outsider.inbox.of("message:new"))


async def test_a_non_participant_sees_nothing(users: Users) -> None:
    a, b, outsider = await users.new(), await users.new(), await users.new()
    conversation_id, _ = await direct(a, b)
    await a.ok("message:send", {"conversation_id": conversation_id, "body": "private"})
    assert await outsider.error("message:history", {"conversation_id": conversation_id}) == "not_found"
    assert await outsider.error("message:send", {"conversation_id": conversation_id, "body": "x"}) == "not_found"
    assert await outsider.error("typing", {"conversation_id": conversation_id, "on": True}) == "not_found"
    unknown = str(uuid.uuid4())
    assert await outsider.error("message:history", {"conversation_id": unknown}) == "not_found"
    listed = await outsider.ok("conversation:list", {})
    assert all(c["conversation_id"] != conversation_id for c in listed["conversations"])


async def test_group_conversation_commands(users: Users) -> None:
    a, b, c = await users.new(), await users.new(), await users.new()
    missing = str(uuid.uuid4())
    code = await a.error("conversation:create", {"kind": "group", "title": "x", "participant_ids": [missing]})
    assert code == "not_found"
    created = await a.ok("conversation:create", {"kind": "group", "title": "Team", "participant_ids": [b.user_id]})
    cid = created["conversation_id"]
    add_missing = {"conversation_id": cid, "user_ids": [missing]}
    assert await a.error("conversation:add-participants", add_missing) == "not_found"
    added = await a.ok("conversation:add-participants", {"conversation_id": cid, "user_ids": [c.user_id]})
    assert added["version"] > created["version"]
    renamed = await a.ok("conversation:rename", {"conversation_id": cid, "title": "Team 2"})
    listed = await c.ok("conversation:list", {})
    item = next(i for i in listed["conversations"] if i["conversation_id"] == cid)
    assert item["title"] == "Team 2" and item["version"] == renamed["version"]
    await c.ok("conversation:leave", {"conversation_id": cid})
    assert await c.error("message:history", {"conversation_id": cid}) == "not_found"
    assert all(i["conversation_id"] != cid for i in (await c.ok("conversation:list", {}))["conversations"])


async def test_message_edit_react_delete(users: Users) -> None:
    a, b = await users.new(), await users.new()
    cid, _ = await direct(a, b)
    sent = await a.ok("message:send", {"conversation_id": cid, "body": "first"})
    mid = sent["message_id"]
    assert await b.error("message:edit", {"conversation_id": cid, "message_id": mid, "body": "x"}) == "forbidden"
    await a.ok("message:edit", {"conversation_id": cid, "message_id": mid, "body": "edited"})
    await b.ok("message:react", {"conversation_id": cid, "message_id": mid, "emoji": "👍", "on": True})
    (message,) = (await a.ok("message:history", {"conversation_id": cid}))["messages"]
    assert message["body"] == "edited" and message["edited_at"] is not None
    assert message["reactions"] == {"👍": [b.user_id]}
    await a.ok("message:delete", {"conversation_id": cid, "message_id": mid})
    (message,) = (await b.ok("message:history", {"conversation_id": cid}))["messages"]
    assert message["deleted"] is True and message["body"] is None


async def test_history_pages(users: Users) -> None:
    a, b = await users.new(), await users.new()
    cid, _ = await direct(a, b)
    for i in range(5):
        await a.ok("message:send", {"conversation_id": cid, "body": f"m{i}"})
    first = await a.ok("message:history", {"conversation_id": cid, "limit": 2})
    assert [m["seq"] for m in first["messages"]] == [5, 4] and first["has_more"]
    rest = await a.ok("message:history", {"conversation_id": cid, "before_seq": 4, "limit": 10})
    assert [m["seq"] for m in rest["messages"]] == [3, 2, 1] and not rest["has_more"]
    assert await a.error("message:history", {"conversation_id": cid, "limit": 101}) == "invalid"


async def test_conversation_list_newest_activity_first_and_pages(users: Users) -> None:
    a = await users.new()
    others = [await users.new(connected=False) for _ in range(3)]
    ids = []
    for other in others:
        cid, _ = await direct(a, other)
        ids.append(cid)
    for cid in ids:  # activity order: ids[0] oldest, ids[2] newest
        await a.ok("message:send", {"conversation_id": cid, "body": "hi"})
    listed = (await a.ok("conversation:list", {}))["conversations"]
    assert [c["conversation_id"] for c in listed] == ids[::-1]
    page = (await a.ok("conversation:list", {"limit": 2}))["conversations"]
    assert [c["conversation_id"] for c in page] == [ids[2], ids[1]]
    rest = (await a.ok("conversation:list", {"limit": 2, "before": page[-1]["last_activity_at"]}))["conversations"]
    assert [c["conversation_id"] for c in rest] == [ids[0]]
    assert await a.error("conversation:list", {"before": "yesterday"}) == "invalid"
    assert await a.error("conversation:list", {"limit": 0}) == "invalid"
    assert await a.error("conversation:list", {"limit": "10"}) == "invalid"


# -- commands: idempotency, versions, correlation --------------------------------------------------


async def test_a_repeated_command_id_returns_the_same_ack_and_appends_once(users: Users) -> None:
    a, b = await users.new(), await users.new()
    cid, _ = await direct(a, b)
    command = {"conversation_id": cid, "body": "once", "command_id": str(uuid.uuid4())}
    first = await a.ok("message:send", command)
    second = await a.ok("message:send", command)
    assert first == second
    history = await a.ok("message:history", {"conversation_id": cid})
    assert [m["body"] for m in history["messages"]] == ["once"]


async def test_expected_version(users: Users) -> None:
    a, b = await users.new(), await users.new()
    cid, version = await direct(a, b)
    sent = await a.ok("message:send", {"conversation_id": cid, "body": "v", "expected_version": version})
    assert sent["version"] == version + 1
    stale = await a.call("message:send", {"conversation_id": cid, "body": "stale", "expected_version": version})
    assert stale["ok"] is False and stale["error"]["code"] == "conflict"
    assert await a.error("message:send", {"conversation_id": cid, "body": "x", "expected_version": -1}) == "invalid"
    assert await a.error("message:send", {"conversation_id": cid, "body": "x", "expected_version": True}) == "invalid"
    history = await a.ok("message:history", {"conversation_id": cid})
    assert [m["body"] for m in history["messages"]] == ["v"]


async def test_correlation_id_comes_back(users: Users) -> None:
    a = await users.new()
    ack = await a.call("conversation:list", {"correlation_id": "client-trace-42"})
    assert ack["correlation_id"] == "client-trace-42"
    failed = await a.call("message:send", {"correlation_id": "client-trace-43", "conversation_id": "bad"})
    assert failed["ok"] is False and failed["correlation_id"] == "client-trace-43"
    made = await a.call("conversation:list", {"correlation_id": "not valid!"})
    assert made["correlation_id"] != "not valid!" and len(made["correlation_id"]) == 36


# -- malformed input never costs the connection -----------------------------------------------------


async def test_unknown_events_and_non_dict_payloads_are_invalid(users: Users) -> None:
    a = await users.new()
    assert a.socket is not None
    sid = a.socket.get_sid()
    assert await a.error("no:such-event", {}) == "invalid"
    assert await a.error("*", {}) == "invalid"
    assert await a.error("no:such-event", "x") == "invalid"
    for payload in ("text", 5, [1, 2], None, True):
        assert await a.error("message:send", payload) == "invalid"
        assert await a.error("conversation:list", payload) == "invalid"
    assert await a.error("message:send", {"conversation_id": str(uuid.uuid4())}) == "invalid"
    assert await a.error("message:send", {"conversation_id": "not-a-uuid", "body": "x"}) == "invalid"
    assert await a.error("message:send", {"conversation_id": str(uuid.uuid4()), "body": "x" * 10_001}) == "invalid"
    assert await a.error("message:send", {"conversation_id": str(uuid.uuid4()), "body": "x", "command_id": "nope"}) == (
        "invalid"
    )
    assert await a.error("connect", {}) == "invalid"
    assert await a.error("disconnect", {}) == "invalid"
    assert a.socket.connected and a.socket.get_sid() == sid
    assert "conversations" in await a.ok("conversation:list", {})


# -- typing ------------------------------------------------------------------------------------------


async def test_typing_reaches_the_other_participant_only(users: Users) -> None:
    a, b, outsider = await users.new(), await users.new(), await users.new()
    cid, _ = await direct(a, b)
    assert await a.ok("typing", {"conversation_id": cid, "on": True}) == {}
    got = await b.inbox.wait_for("typing", lambda d: d["conversation_id"] == cid)
    assert got == {"conversation_id": cid, "user_id": a.user_id, "on": True}
    await asyncio.sleep(QUIET_S)
    assert not [d for d in a.inbox.of("typing") if d["conversation_id"] == cid]
    assert not [d for d in outsider.inbox.of("typing") if d["conversation_id"] == cid]
    assert await a.error("typing", {"conversation_id": cid, "on": "yes"}) == "invalid"


async def test_pushes_reach_every_socket_of_a_participant(users: Users) -> None:
    a, b = await users.new(), await users.new()
    second = Session(b.user_id, b.username, b.access_token, b.refresh_token)
    await users.connect(second)
    cid, _ = await direct(a, b)
    sent = await a.ok("message:send", {"conversation_id": cid, "body": "both devices"})
    for device in (b, second):
        await device.inbox.wait_for("message:new", lambda d: d["message_id"] == sent["message_id"])
