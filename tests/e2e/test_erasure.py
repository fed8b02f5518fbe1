"""Crypto-shredding end to end: personal data is sealed in the log, and an erasure (by the user or
an operator) makes it unreadable in every view, search, media, replay and rebuild, while the log
stays immutable, the audit trail verifies, and other users' data is untouched."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import socketio

from infra.kafka.log_reader import LogReader, Record
from tests.conftest import Platform
from tests.e2e.conftest import Session, Users, connect, login, parley
from tests.e2e.test_media import group, uploaded
from tests.e2e.test_search import hits, word

pytestmark = pytest.mark.e2e

ERASED = "[erased]"


async def log_bytes(platform: Platform) -> bytes:
    """Every record of the events topic, keys and values, as stored."""
    chunks: list[bytes] = []

    def raw(record: Record) -> bytes:
        return (record.key or b"") + b"\n" + (record.value or b"")

    async with LogReader(platform.settings, platform.settings.events_topic) as reader:
        async for batch in reader.batches(raw):
            chunks += [entry.value for entry in batch]
    return b"\n".join(chunks)


def replay_lines(platform: Platform, *args: str) -> list[dict[str, Any]]:
    done = parley(platform, "replay", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def history(session: Session, conv: str) -> list[dict[str, Any]]:
    page = await session.ok("message:history", {"conversation_id": conv, "limit": 100})
    messages: list[dict[str, Any]] = page["messages"]
    return sorted(messages, key=lambda m: int(m["seq"]))


async def disconnected(client: socketio.AsyncClient, within_s: float = 10.0) -> bool:
    """True once the server has closed the client's connection (no reconnection: ``wait`` returns)."""
    async with asyncio.timeout(within_s):
        await client.wait()
    return not client.connected


async def test_personal_data_is_sealed_in_the_log(platform: Platform, users: Users) -> None:
    w = word()
    alice, bob = await users.new(display_name=f"Alice {w}"), await users.new()
    conv = await group(alice, [bob])
    await alice.ok("message:send", {"conversation_id": conv, "body": f"the plan is {w}"})
    assert (await history(bob, conv))[-1]["body"] == f"the plan is {w}", "clients read plaintext"
    stored = await log_bytes(platform)
    for secret in (w, alice.username):
        assert secret.encode() not in stored, f"{secret!r} is in the log in clear"
    # What the log does hold in clear: ids and structure (docs/THREAT-MODEL.md).
    assert conv.encode() in stored and alice.user_id.encode() in stored


async def test_erasing_myself_shreds_my_data_everywhere_and_spares_everyone_else(
    platform: Platform, users: Users, http: httpx.AsyncClient
) -> None:
    mine, theirs = word(), word()
    alice, bob = await users.new(display_name=f"Alice {mine}"), await users.new()
    conv = await group(alice, [bob])
    sent = await alice.ok("message:send", {"conversation_id": conv, "body": f"alice says {mine}"})
    media_id = await uploaded(alice, conv)
    await alice.ok("media:upload-complete", {"media_id": media_id})
    await bob.ok("message:send", {"conversation_id": conv, "body": f"bob says {theirs}"})
    assert len(await hits(bob, "search:messages", {"query": mine})) == 1
    assert await hits(bob, "search:users", {"query": mine}) != []
    assert (await bob.ok("media:get-download-url", {"media_id": media_id}))["url"]

    erased = await http.delete("/users/me", headers={"Authorization": f"Bearer {alice.access_token}"})
    assert erased.status_code == 202, erased.text
    assert erased.json() == {"user_id": alice.user_id, "erased": True}

    # Her connected socket is closed; her tokens and password stop working.
    assert alice.socket is not None and await disconnected(alice.socket)
    assert (await login(http, alice.username)).status_code == 401
    assert (await http.post("/auth/refresh", json={"refresh_token": alice.refresh_token})).status_code == 401
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(platform.base_url, alice.access_token)
    again = await http.delete("/users/me", headers={"Authorization": f"Bearer {alice.access_token}"})
    assert again.status_code == 401

    # Her personal data reads "[erased]" in history; Bob's message is intact.
    shown = await history(bob, conv)
    by_id = {m["message_id"]: m for m in shown}
    assert by_id[sent["message_id"]]["body"] == ERASED
    assert [m["body"] for m in shown if m["sender_id"] == bob.user_id] == [f"bob says {theirs}"]
    conversation = next(
        c for c in (await bob.ok("conversation:list", {}))["conversations"] if c["conversation_id"] == conv
    )
    assert conversation["last_message"]["body"] == f"bob says {theirs}"
    # Search forgets her; her media are gone; her key bundle is refused.
    assert await hits(bob, "search:messages", {"query": mine}) == []
    assert await hits(bob, "search:users", {"query": mine}) == []
    assert await hits(bob, "search:users", {"query": alice.username}) == []
    assert [h["message_id"] for h in await hits(bob, "search:messages", {"query": theirs})] != []
    assert await bob.error("media:get-download-url", {"media_id": media_id}) == "not_found"
    assert await bob.error("keys:bundle", {"user_id": alice.user_id}) == "not_found"

    # Replay opens what can be opened: her fields read "[erased]", Bob's read as sent.
    events = replay_lines(platform, "--stream", f"conversation:{conv}")
    bodies = {e["payload"]["message_id"]: e["payload"]["body"] for e in events if e["type"] == "MessageSent"}
    assert bodies[sent["message_id"]] == ERASED
    assert f"bob says {theirs}" in bodies.values()
    uploads = [e for e in events if e["type"] == "MediaUploadRequested"]
    assert [u["payload"]["filename"] for u in uploads] == [ERASED]
    (erasure,) = [e for e in replay_lines(platform, "--user", alice.user_id) if e["type"] == "UserErased"]
    assert erasure["stream_id"] == f"account:{alice.user_id}"
    assert erasure["payload"]["erased_by"] == "user"

    # A rebuild from the log reproduces the erased state; the trail still verifies.
    for name in ("messages", "users", "conversations", "media", "search"):
        rebuilt = parley(platform, "projections", "rebuild", name)
        assert rebuilt.returncode == 0, rebuilt.stderr
    assert await history(bob, conv) == shown
    assert await hits(bob, "search:messages", {"query": mine}) == []
    assert (await login(http, alice.username)).status_code == 401
    verified = parley(platform, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_an_operator_erases_a_user_from_the_cli(
    platform: Platform, users: Users, http: httpx.AsyncClient
) -> None:
    w = word()
    carol, dave = await users.new(), await users.new()
    conv = await group(carol, [dave])
    await carol.ok("message:send", {"conversation_id": conv, "body": f"carol says {w}"})

    done = parley(platform, "erase", "--user", carol.user_id)
    assert done.returncode == 0, done.stderr
    assert "erased" in done.stdout
    assert (await login(http, carol.username)).status_code == 401
    assert [m["body"] for m in await history(dave, conv)] == [ERASED]
    (erasure,) = replay_lines(platform, "--stream", f"account:{carol.user_id}")
    assert erasure["type"] == "UserErased" and erasure["payload"]["erased_by"] == "operator"
    assert erasure["actor_id"] is None, "an operator's erasure has no user as its actor"

    twice = parley(platform, "erase", "--user", carol.user_id)
    assert twice.returncode == 0 and "already" in twice.stdout
    unknown = parley(platform, "erase", "--user", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "no user" in unknown.stderr
    bad = parley(platform, "erase", "--user", "carol")
    assert bad.returncode == 2 and "--user" in bad.stderr
