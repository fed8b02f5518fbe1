"""Replay determinism, JSON round trips, redelivery and command idempotency over random histories."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from domain import decider
from domain.conversation import ConversationState, MessageRef, conversation_id_of, conversation_stream_id
from domain.envelope import CommandEnvelope, EventEnvelope
from domain.names import username_stream_id
from domain.users import UsernameState
from tests.unit.app.scenario import INDEX_KEY
from tests.unit.domain.harness import Stream, command, fold, fold_messages

USERS = ("u0", "u1", "u2", "u3")
STREAM_ID = conversation_stream_id("00000000-0000-4000-8000-0000000000c3")
CID = conversation_id_of(STREAM_ID)
KINDS = (
    "message:send",
    "message:send",
    "message:edit",
    "message:delete",
    "message:react",
    "message:read",
    "conversation:add-participants",
    "conversation:remove-participant",
    "conversation:leave",
    "conversation:rename",
)

Step = tuple[str, int, int, bool]
steps = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 3), st.integers(0, 9), st.booleans()), min_size=1, max_size=30
)


def to_command(stream: Stream, step: Step, n: int) -> CommandEnvelope:
    """A concrete command for an abstract step, against the stream as it is now."""
    kind, who, arg, flag = step
    actor = USERS[who]
    messages = list(stream.refs)
    message_id = messages[arg % len(messages)] if messages else "missing"
    payload: dict[str, Any] = {"conversation_id": CID}
    by_kind: dict[str, dict[str, Any]] = {
        "message:send": {"body": f"body {arg}"},
        "message:edit": {"message_id": message_id, "body": f"edit {arg}"},
        "message:delete": {"message_id": message_id},
        "message:react": {"message_id": message_id, "emoji": "👍🎉"[arg % 2], "on": flag},
        "message:read": {"seq": arg},
        "conversation:add-participants": {"user_ids": [USERS[arg % 4], USERS[(arg + 1) % 4]]},
        "conversation:remove-participant": {"user_id": USERS[arg % 4]},
        "conversation:leave": {},
        "conversation:rename": {"title": f"title {arg % 3}"},
    }
    payload |= by_kind[kind]
    expected = stream.state.version - (arg % 2) if flag and arg > 6 else None
    return command(kind, actor, stream.stream_id, payload, command_id=f"step-{n}", expected_version=expected)


def history(script: list[Step]) -> tuple[Stream, list[CommandEnvelope]]:
    stream = Stream(STREAM_ID)
    create = {"kind": "group", "participant_ids": list(USERS[1:3]), "title": "Team"}
    commands = [command("conversation:create", USERS[0], STREAM_ID, create, command_id="create")]
    stream.run(commands[0])
    for n, step in enumerate(script):
        commands.append(to_command(stream, step, n))
        stream.run(commands[-1])
    return stream, commands


@given(steps)
def test_folding_the_same_log_twice_gives_the_same_state(script: list[Step]) -> None:
    stream, _ = history(script)
    assert fold(STREAM_ID, stream.log) == fold(STREAM_ID, stream.log) == stream.state
    assert fold_messages(stream.log) == fold_messages(stream.log) == stream.refs


@given(steps)
def test_the_log_survives_a_json_round_trip(script: list[Step]) -> None:
    stream, _ = history(script)
    stored = [EventEnvelope.model_validate_json(event.model_dump_json()) for event in stream.log]
    assert stored == stream.log
    assert fold(STREAM_ID, stored) == stream.state


@given(steps)
def test_states_and_message_refs_round_trip_through_json(script: list[Step]) -> None:
    stream, _ = history(script)
    stored = json.loads(json.dumps(decider.state_to_dict(stream.state)))
    assert decider.state_from_dict(stored) == stream.state
    for ref in stream.refs.values():
        assert decider.message_ref_from_dict(json.loads(json.dumps(decider.message_ref_to_dict(ref)))) == ref


@given(steps, st.data())
def test_redelivered_events_change_nothing(script: list[Step], data: st.DataObject) -> None:
    """Events delivered again, in any order after their first delivery, leave the state alone."""
    stream, _ = history(script)
    redelivered: list[EventEnvelope] = []
    for event in stream.log:
        redelivered.append(event)
        redelivered.extend(data.draw(st.lists(st.sampled_from(redelivered), max_size=2)))
    assert fold(STREAM_ID, redelivered) == stream.state


@given(steps)
def test_the_message_index_absorbs_an_immediate_redelivery(script: list[Step]) -> None:
    stream, _ = history(script)
    refs: dict[str, MessageRef] = {}
    for event in stream.log:
        message_id = event.payload.get("message_id")
        if message_id is None:
            assert decider.evolve_message(None, event) is None
            continue
        once = decider.evolve_message(refs.get(message_id), event)
        assert once is not None
        assert decider.evolve_message(once, event) == once
        refs[message_id] = once
    assert refs == stream.refs


@given(steps)
def test_a_command_decided_twice_yields_identical_events(script: list[Step]) -> None:
    """At-least-once delivery: deciding again from the same state gives byte-identical envelopes."""
    stream, commands = history(script)
    replayed = Stream(STREAM_ID)
    for cmd in commands:
        message_id = decider.message_id_of(cmd)
        ref = replayed.refs.get(message_id) if message_id else None
        before = replayed.state
        first = replayed.run(cmd)
        if first.ok:
            again = decider.decide(before, cmd, ref)
            envelopes = decider.envelopes_for(cmd, before.version, again.events)
            assert [e.model_dump_json() for e in envelopes] == [e.model_dump_json() for e in first.events]
            assert again.data == first.data
    assert replayed.log == stream.log


@given(steps, st.lists(st.integers(0, 40), min_size=1, max_size=10))
def test_repeated_command_ids_append_nothing_and_return_the_same_result(script: list[Step], repeats: list[int]) -> None:
    stream, commands = history(script)
    first = {cmd.command_id: stream.results[cmd.command_id] for cmd in commands}
    state, length = stream.state, len(stream.log)
    for pick in repeats:
        cmd = commands[pick % len(commands)]
        assert stream.run(cmd) == first[cmd.command_id]
    assert stream.state == state and len(stream.log) == length


def test_username_state_round_trips_and_replays() -> None:
    stream = Stream(username_stream_id("Alice", INDEX_KEY))
    payload = {"user_id": "u-1", "username": "Alice", "password_hash": "h"}
    assert stream.run(command("user:register", None, stream.stream_id, payload)).ok
    assert isinstance(stream.state, UsernameState)
    assert decider.state_from_dict(json.loads(json.dumps(decider.state_to_dict(stream.state)))) == stream.state
    assert fold(stream.stream_id, stream.log * 2) == stream.state
    assert isinstance(decider.initial_state(STREAM_ID), ConversationState)
