"""Username normalisation and registration (the username reservation stream)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.names import normalise_username, username_hash, username_stream_id
from domain.users import UsernameState
from tests.unit.app.scenario import INDEX_KEY
from tests.unit.domain.harness import Result, Stream, command

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


def register(stream: Stream, username: str, *, expected_version: int | None = None, **extra: Any) -> Result:
    payload = {"user_id": "user-1", "username": username, "password_hash": HASH, **extra}
    return stream.run(command("user:register", None, stream.stream_id, payload, expected_version=expected_version))


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("alice", "alice"),
        ("  Alice ", "alice"),
        ("\uff21\uff2c\uff29\uff23\uff25", "alice"),  # fullwidth ALICE, NFKC
        ("Straße", "strasse"),  # casefold
        ("İstanbul", "i̇stanbul"),  # casefold leaves a combining dot after the i
        ("Ñandú_2.0-x", "ñandú_2.0-x"),
        ("\uff4a\uff4f\uff53e\u0301", "jos\u00e9"),
        ("李小龍", "李小龍"),
        ("abc", "abc"),
        ("a" * 32, "a" * 32),
    ],
)
def test_normalise_username(raw: str, normal: str) -> None:
    assert normalise_username(raw) == normal
    assert username_stream_id(raw, INDEX_KEY) == "username:" + username_hash(normal, INDEX_KEY)
    assert normal not in username_stream_id(raw, INDEX_KEY), "the name is never in the stream id"


@pytest.mark.parametrize(
    "raw", ["ab", "a" * 33, "a b c", "al!ce", "alice@example", "", "   ", "\u0301abc", "a\u200bbc", "x" * 10_000]
)
def test_invalid_usernames(raw: str) -> None:
    with pytest.raises(DomainError) as info:
        normalise_username(raw)
    assert info.value.code == "invalid"


def test_a_username_must_be_a_string() -> None:
    with pytest.raises(DomainError):
        normalise_username(42)  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_normalising_is_idempotent_or_invalid(raw: str) -> None:
    try:
        normal = normalise_username(raw)
    except DomainError as exc:
        assert exc.code == "invalid"
    else:
        assert normalise_username(normal) == normal


def test_register() -> None:
    stream = Stream(username_stream_id("Alice", INDEX_KEY))
    result = register(stream, " Alice ")
    assert result.ok and result.data == {"user_id": "user-1", "version": 1}
    assert [event.type for event in result.events] == ["UserRegistered"]
    assert result.events[0].payload == {
        "user_id": "user-1",
        "username": "Alice",
        "normalised": "alice",
        "display_name": "Alice",
        "password_hash": HASH,
    }
    # No name in the state: it is kept in a changelog topic that an erasure cannot rewrite.
    assert stream.state == UsernameState(name_key=username_hash("alice", INDEX_KEY), version=1, user_id="user-1")


def test_register_with_a_display_name() -> None:
    stream = Stream(username_stream_id("bob", INDEX_KEY))
    result = register(stream, "bob", display_name="  Bob B. ")
    assert result.events[0].payload["display_name"] == "Bob B."


def test_a_taken_username_conflicts_whatever_its_case() -> None:
    stream = Stream(username_stream_id("alice", INDEX_KEY))
    assert register(stream, "alice").ok
    for typed in ("alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45"):
        result = register(stream, typed)
        assert result.code == "conflict" and result.message == "username taken"
    assert stream.state.version == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "alice", "password_hash": HASH},
        {"user_id": "u", "password_hash": HASH},
        {"user_id": "u", "username": "alice"},
        {"user_id": "u", "username": "alice", "password_hash": ""},
        {"user_id": 7, "username": "alice", "password_hash": HASH},
        {"user_id": "u", "username": "alice", "password_hash": HASH, "display_name": ""},
        {"user_id": "u", "username": "alice", "password_hash": HASH, "display_name": "d" * 65},
        {"user_id": "u", "username": "al", "password_hash": HASH},
    ],
)
def test_register_refuses_invalid_payloads(payload: dict[str, Any]) -> None:
    stream = Stream(username_stream_id("alice", INDEX_KEY))
    result = stream.run(command("user:register", None, stream.stream_id, payload))
    assert result.code == "invalid" and stream.log == []


def test_register_checks_expected_version() -> None:
    stream = Stream(username_stream_id("alice", INDEX_KEY))
    assert register(stream, "alice", expected_version=3).code == "conflict"
    assert register(stream, "alice", expected_version=0).ok


def test_conversation_commands_are_invalid_on_a_username_stream() -> None:
    stream = Stream(username_stream_id("alice", INDEX_KEY))
    result = stream.run(command("message:send", "u", stream.stream_id, {"conversation_id": "x", "body": "hi"}))
    assert result.code == "invalid"
