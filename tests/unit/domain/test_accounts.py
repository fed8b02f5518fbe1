"""Accounts (stream `account:<user_id>`): the erasure of a user, by the user or by an operator."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import decider
from domain.accounts import ERASE, AccountState, account_stream_id, initial_state
from domain.catalog import parse_payload
from domain.conversation import conversation_stream_id
from domain.envelope import iso
from domain.names import username_stream_id
from tests.unit.app.scenario import INDEX_KEY, USERS
from tests.unit.domain.harness import Result, Stream, command, fold

A, B, C, _ = USERS


def erase(stream: Stream, actor: str | None, user_id: str | None = None, **extra: Any) -> Result:
    payload = {"user_id": user_id if user_id is not None else stream.stream_id.removeprefix("account:"), **extra}
    return stream.run(command(ERASE, actor, stream.stream_id, payload))


def test_a_user_erases_their_own_account() -> None:
    stream = Stream(account_stream_id(A))
    cmd = command(ERASE, A, stream.stream_id, {"user_id": A})
    result = stream.run(cmd)
    assert result.ok and result.data == {"user_id": A, "erased": True, "version": 1}
    (event,) = result.events
    assert event.type == "UserErased" and event.stream_id == account_stream_id(A) and event.stream_version == 1
    assert event.payload == {"user_id": A, "erased_by": "user", "erased_at": iso(cmd.issued_at)}
    assert event.actor_id == A and event.causation_id == cmd.command_id
    parse_payload("UserErased", event.payload)  # the catalogue's model holds it
    assert stream.state == AccountState(user_id=A, version=1, erased=True)


def test_an_operator_erases_an_account() -> None:
    stream = Stream(account_stream_id(A))
    result = erase(stream, None)
    assert result.ok
    (event,) = result.events
    assert event.payload["erased_by"] == "operator" and event.actor_id is None


@pytest.mark.parametrize("erased_before", [False, True])
def test_nobody_else_may_erase_an_account(erased_before: bool) -> None:
    stream = Stream(account_stream_id(A))
    if erased_before:
        assert erase(stream, A).ok
    before = (stream.state, len(stream.log))
    result = erase(stream, B)
    assert (result.ok, result.code) == (False, "forbidden")
    assert (stream.state, len(stream.log)) == before


@pytest.mark.parametrize(("first", "second"), [(A, A), (A, None), (None, A), (None, None)])
def test_erasing_twice_is_ok_with_no_second_event(first: str | None, second: str | None) -> None:
    stream = Stream(account_stream_id(A))
    assert erase(stream, first).ok
    again = erase(stream, second)
    assert again.ok and again.events == ()
    assert again.data == {"user_id": A, "erased": True, "version": 1}
    assert [e.type for e in stream.log] == ["UserErased"]
    assert stream.log[0].payload["erased_by"] == ("user" if first is not None else "operator"), "the first stands"


@pytest.mark.parametrize("actor", [A, B, None])
def test_the_payload_must_name_the_streams_user(actor: str | None) -> None:
    stream = Stream(account_stream_id(A))
    result = erase(stream, actor, user_id=B)
    assert (result.ok, result.code) == (False, "invalid")
    assert stream.log == [] and stream.state == initial_state(stream.stream_id)


@pytest.mark.parametrize("payload", [{}, {"user_id": ""}, {"user_id": 7}, {"user_id": None}, {"user_id": "u" * 65}])
def test_invalid_payloads_are_refused(payload: dict[str, Any]) -> None:
    stream = Stream(account_stream_id(A))
    result = stream.run(command(ERASE, A, stream.stream_id, payload))
    assert (result.ok, result.code) == (False, "invalid") and stream.log == []


def test_unknown_payload_fields_are_ignored() -> None:
    stream = Stream(account_stream_id(A))
    result = erase(stream, A, command_id="x", reason="gdpr")
    assert result.ok and result.events[0].payload == {
        "user_id": A,
        "erased_by": "user",
        "erased_at": result.events[0].payload["erased_at"],
    }


def test_other_aggregates_commands_are_invalid_on_an_account_stream() -> None:
    stream = Stream(account_stream_id(A))
    send = stream.run(command("message:send", A, stream.stream_id, {"conversation_id": "c", "body": "hi"}))
    register = stream.run(
        command("user:register", None, stream.stream_id, {"user_id": A, "username": "alice", "password_hash": "h"})
    )
    assert send.code == "invalid" and register.code == "invalid" and stream.log == []


@pytest.mark.parametrize(
    "stream_id",
    [conversation_stream_id("c0ffee00-0000-0000-0000-000000000000"), username_stream_id("alice", INDEX_KEY)],
)
def test_an_erasure_is_invalid_on_another_aggregates_stream(stream_id: str) -> None:
    stream = Stream(stream_id)
    result = stream.run(command(ERASE, A, stream_id, {"user_id": A}))
    assert result.code == "invalid" and stream.log == []


def test_routing_and_state_records() -> None:
    stream_id = account_stream_id(A)
    assert stream_id == f"account:{A}"
    assert decider.aggregate_kind(stream_id) == "account"
    assert decider.command_aggregate_kind(ERASE) == "account"
    assert decider.initial_state(stream_id) == AccountState(user_id=A)
    erased = AccountState(user_id=A, version=1, erased=True)
    assert decider.state_from_dict(decider.state_to_dict(erased)) == erased
    assert decider.state_to_dict(erased)["aggregate"] == "account"
    with pytest.raises(ValueError):
        initial_state("account:")
    with pytest.raises(ValueError):
        initial_state(f"keys:{A}")


def test_deciding_the_same_command_twice_gives_identical_events() -> None:
    """Redelivery: the time in the event is the command's, never the clock's."""
    state = decider.initial_state(account_stream_id(A))
    cmd = command(ERASE, A, account_stream_id(A), {"user_id": A})
    first = decider.envelopes_for(cmd, state.version, decider.decide(state, cmd, None).events)
    second = decider.envelopes_for(cmd, state.version, decider.decide(state, cmd, None).events)
    assert [e.model_dump_json() for e in first] == [e.model_dump_json() for e in second]


def test_a_redelivered_event_changes_nothing_and_another_streams_event_is_refused() -> None:
    stream = Stream(account_stream_id(A))
    (event,) = erase(stream, A).events
    assert decider.evolve(stream.state, event) == stream.state
    with pytest.raises(ValueError):
        decider.evolve(decider.initial_state(account_stream_id(B)), event)


ATTEMPTS = st.lists(st.tuples(st.sampled_from([A, B, None]), st.sampled_from([A, B])), max_size=8)


@given(ATTEMPTS)
def test_any_sequence_of_erasures_appends_at_most_one_event(attempts: list[tuple[str | None, str]]) -> None:
    stream = Stream(account_stream_id(A))
    allowed: list[str | None] = []  # the actors of the permitted erasures, in order
    for actor, named in attempts:
        result = erase(stream, actor, user_id=named)
        if named != A:
            assert result.code == "invalid"
        elif actor not in (A, None):
            assert result.code == "forbidden"
        else:
            assert result.ok and result.data == {"user_id": A, "erased": True, "version": 1}
            assert len(result.events) == (0 if allowed else 1), "only the first permitted erasure appends"
            allowed.append(actor)
    if not allowed:
        assert stream.log == [] and stream.state == AccountState(user_id=A)
    else:
        (event,) = stream.log
        assert event.payload["erased_by"] == ("user" if allowed[0] == A else "operator")
        assert stream.state == AccountState(user_id=A, version=1, erased=True)
    assert fold(stream.stream_id, stream.log) == stream.state, "replaying the log gives the same state"
