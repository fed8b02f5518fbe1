"""Every guarded socket event x {participant, removed participant, stranger}.

A row names an event, how to build its payload from the world, and what each role gets: an error
code, or a check of the ack's data. Add a row per new event (media rows go here too)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest

from tests.e2e.conftest import Session, Users

pytestmark = pytest.mark.e2e

Role = Literal["participant", "removed", "stranger"]
ROLES: tuple[Role, ...] = ("participant", "removed", "stranger")


@dataclass
class World:
    """A group of an owner and a participant, a removed participant, a stranger, and one message."""

    owner: Session
    sessions: dict[Role, Session]
    conversation_id: str
    word: str
    message_id: str
    media_id: str  # the owner's, ready (the removed participant fetched its URL before the removal)


Check = Callable[[World, dict[str, Any]], bool]  # given the ack's data
Expect = str | Check  # an error code, or a check of the data


@dataclass(frozen=True)
class Row:
    event: str
    payload: Callable[[World], dict[str, Any]]
    participant: Expect
    removed: Expect
    stranger: Expect

    def expect(self, role: Role) -> Expect:
        expected: Expect = getattr(self, role)
        return expected


def finds_the_message(world: World, data: dict[str, Any]) -> bool:
    return [h["message_id"] for h in data["hits"]] == [world.message_id]


def finds_the_conversation(world: World, data: dict[str, Any]) -> bool:
    return [h["conversation_id"] for h in data["hits"]] == [world.conversation_id]


def finds_the_owner(world: World, data: dict[str, Any]) -> bool:
    return world.owner.user_id in [h["user_id"] for h in data["hits"]]


def nothing(world: World, data: dict[str, Any]) -> bool:
    return data == {"hits": []}


def an_upload_url(world: World, data: dict[str, Any]) -> bool:
    url: str = data["upload_url"]
    return data["method"] == "PUT" and url.startswith("http")


def a_download_url(world: World, data: dict[str, Any]) -> bool:
    url: str = data["url"]
    return data["media_id"] == world.media_id and url.startswith("http")


def upload(w: World) -> dict[str, Any]:
    return {"conversation_id": w.conversation_id, "filename": "a.txt", "content_type": "text/plain", "size": 5}


ROWS: list[Row] = [
    Row(
        "search:messages",
        lambda w: {"query": w.word, "conversation_id": w.conversation_id},
        participant=finds_the_message,
        removed="not_found",
        stranger="not_found",
    ),
    Row(
        "search:messages",
        lambda w: {"query": w.word},
        participant=finds_the_message,
        removed=nothing,
        stranger=nothing,
    ),
    Row(
        "search:conversations",
        lambda w: {"query": w.word},
        participant=finds_the_conversation,
        removed=nothing,
        stranger=nothing,
    ),
    Row("media:request-upload", upload, participant=an_upload_url, removed="not_found", stranger="not_found"),
    # Only the uploader completes or deletes; the others learn no more than their role allows.
    Row(
        "media:upload-complete",
        lambda w: {"media_id": w.media_id},
        participant="forbidden",
        removed="not_found",
        stranger="not_found",
    ),
    Row(
        "media:delete",
        lambda w: {"media_id": w.media_id},
        participant="forbidden",
        removed="not_found",
        stranger="not_found",
    ),
    Row(
        "media:get-download-url",
        lambda w: {"media_id": w.media_id},
        participant=a_download_url,
        removed="not_found",
        stranger="not_found",
    ),
    Row(
        "message:send",
        lambda w: {"conversation_id": w.conversation_id, "body": "mine now", "media_ids": [w.media_id]},
        participant="forbidden",
        removed="not_found",
        stranger="not_found",
    ),
    # The user directory is open to every user; it never shows conversations.
    Row(
        "search:users",
        lambda w: {"query": w.owner.username},
        participant=finds_the_owner,
        removed=finds_the_owner,
        stranger=finds_the_owner,
    ),
]


async def make_world(users: Users) -> World:
    owner, participant, removed, stranger = [await users.new() for _ in range(4)]
    word = "m" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12])
    created = await owner.ok(
        "conversation:create",
        {"kind": "group", "participant_ids": [participant.user_id, removed.user_id], "title": f"Matrix {word}"},
    )
    conv = created["conversation_id"]
    sent = await owner.ok("message:send", {"conversation_id": conv, "body": f"the matrix word is {word}"})
    media = await owner.ok(
        "media:request-upload", {"conversation_id": conv, "filename": "m.txt", "content_type": "text/plain", "size": 5}
    )
    async with httpx.AsyncClient(timeout=10) as http:
        put = await http.put(media["upload_url"], content=b"hello", headers={"Content-Type": "text/plain"})
        assert put.status_code == 200
    await owner.ok("media:upload-complete", {"media_id": media["media_id"]})
    # The soon removed participant searches and fetches first (so stale cache entries would exist),
    # then is removed.
    await removed.ok("search:messages", {"query": word})
    await removed.ok("media:get-download-url", {"media_id": media["media_id"]})
    await owner.ok("conversation:remove-participant", {"conversation_id": conv, "user_id": removed.user_id})
    sessions: dict[Role, Session] = {"participant": participant, "removed": removed, "stranger": stranger}
    return World(owner, sessions, conv, word, sent["message_id"], media["media_id"])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", ROWS, ids=[f"{r.event}-{i}" for i, r in enumerate(ROWS)])
async def test_authorization_matrix(users: Users, row: Row, role: Role) -> None:
    world = await make_world(users)
    session = world.sessions[role]
    ack = await session.call(row.event, row.payload(world))
    expected = row.expect(role)
    if isinstance(expected, str):
        assert ack["ok"] is False and ack["error"]["code"] == expected, ack
    else:
        assert ack["ok"] is True and expected(world, ack["data"]), ack
