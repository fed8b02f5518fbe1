"""Every guarded socket event x {participant, removed participant, stranger}.

A row names an event, how to build its payload from the world, and what each role gets: an error
code, or a check of the ack's data. Add a row per new event (media rows go here too)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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
    # The soon removed participant searches first (so a stale cache entry would exist), then is removed.
    await removed.ok("search:messages", {"query": word})
    await owner.ok("conversation:remove-participant", {"conversation_id": conv, "user_id": removed.user_id})
    return World(
        owner, {"participant": participant, "removed": removed, "stranger": stranger}, conv, word, sent["message_id"]
    )


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
