"""Untrusted payloads: whatever a client sends, a command is refused with a DomainError (invalid
when its payload fails the command's model), never another exception, and nothing changes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain import decider
from domain.conversation import conversation_id_of, conversation_stream_id
from domain.errors import DomainError
from domain.keys import keys_stream_id
from domain.names import username_stream_id
from tests.unit.app.scenario import INDEX_KEY
from tests.unit.domain.harness import Stream, command
from tests.unit.domain.test_keys import key as public_key
from tests.unit.domain.test_keys import prekeys, publish_payload

ALICE, BOB, CAROL = "user-alice", "user-bob", "user-carol"
GROUP = conversation_stream_id("00000000-0000-4000-8000-0000000000b2")
CID = conversation_id_of(GROUP)


def prepared() -> tuple[Stream, str]:
    """A group (Alice admin, Bob, Carol) with one message of Alice's, carrying one reaction."""
    stream = Stream(GROUP)
    create = {"kind": "group", "participant_ids": [BOB, CAROL], "title": "Team"}
    assert stream.run(command("conversation:create", ALICE, GROUP, create)).ok
    sent = stream.run(command("message:send", ALICE, GROUP, {"conversation_id": CID, "body": "hi"}))
    message_id = str(sent.data["message_id"])
    react = {"conversation_id": CID, "message_id": message_id, "emoji": "👍", "on": True}
    assert stream.run(command("message:react", BOB, GROUP, react)).ok
    return stream, message_id


STREAM, MESSAGE_ID = prepared()
KEYS = Stream(keys_stream_id(ALICE))
assert KEYS.run(command("keys:publish", ALICE, KEYS.stream_id, publish_payload(count=3))).ok

VALID: dict[str, dict[str, Any]] = {
    "conversation:create": {"kind": "group", "participant_ids": [BOB], "title": "Other"},
    "conversation:add-participants": {"conversation_id": CID, "user_ids": ["user-dave"]},
    "conversation:remove-participant": {"conversation_id": CID, "user_id": BOB},
    "conversation:leave": {"conversation_id": CID},
    "conversation:rename": {"conversation_id": CID, "title": "Renamed"},
    "message:send": {"conversation_id": CID, "body": "hello"},
    "message:edit": {"conversation_id": CID, "message_id": MESSAGE_ID, "body": "edited"},
    "message:delete": {"conversation_id": CID, "message_id": MESSAGE_ID},
    "message:react": {"conversation_id": CID, "message_id": MESSAGE_ID, "emoji": "🎉", "on": True},
    "message:read": {"conversation_id": CID, "seq": 1},
    "user:register": {"user_id": "user-new", "username": "newbie", "password_hash": "h"},
    "keys:publish": {**publish_payload(device="laptop", identity=2, count=2), "identity_dh_key": public_key(3)},
    "keys:replenish": {"device_id": "phone", "one_time_prekeys": prekeys(10, 2)},
    "keys:bundle": {"user_id": ALICE},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["", " ", "x" * 33, "x" * 201, "x" * 10_001, CID, MESSAGE_ID, ALICE, "group", "direct", "1"]),
)
garbage = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def payloads(draw: st.DrawFn, command_type: str) -> dict[str, Any]:
    """A valid payload with fields dropped or replaced by garbage, or a dict of garbage."""
    base = dict(VALID[command_type])
    if draw(st.integers(0, 4)) == 0:
        keys = st.sampled_from([*base, "extra"]) | st.text(max_size=6)
        return draw(st.dictionaries(keys, garbage, max_size=5))
    for key in draw(st.lists(st.sampled_from(sorted(base)), min_size=1, max_size=len(base), unique=True)):
        if draw(st.booleans()):
            base[key] = draw(garbage)
        else:
            del base[key]
    return base


def stream_for(command_type: str) -> Stream:
    if command_type.startswith("keys:"):
        return KEYS
    return Stream(username_stream_id("newbie", INDEX_KEY)) if command_type == "user:register" else STREAM


@pytest.mark.parametrize("command_type", sorted(VALID))
def test_valid_payloads_are_accepted(command_type: str) -> None:
    stream = stream_for(command_type)
    actor = None if command_type == "user:register" else ALICE
    payload = dict(VALID[command_type])
    if command_type == "conversation:create":  # a group create on an existing stream conflicts
        with pytest.raises(DomainError) as info:
            decider.decide(stream.state, command(command_type, actor, stream.stream_id, payload), None)
        assert info.value.code == "conflict"
        return
    message_id = decider.message_id_of(command(command_type, actor, stream.stream_id, payload))
    ref = stream.refs.get(message_id) if message_id else None
    decision = decider.decide(stream.state, command(command_type, actor, stream.stream_id, payload), ref)
    assert decision.events
    if command_type != "user:register":
        assert decision.data["version"] == stream.state.version + len(decision.events)


@pytest.mark.parametrize("command_type", sorted(VALID))
@given(data=st.data())
def test_garbage_payloads_are_refused_cleanly(command_type: str, data: st.DataObject) -> None:
    payload = data.draw(payloads(command_type))
    stream = stream_for(command_type)
    actor = data.draw(st.sampled_from([None, ALICE, CAROL])) if command_type == "user:register" else ALICE
    cmd = command(command_type, actor, stream.stream_id, payload)
    message_id = decider.message_id_of(cmd)
    ref = stream.refs.get(message_id) if message_id else None
    before = decider.state_to_dict(stream.state)
    ref_before = decider.message_ref_to_dict(ref) if ref else None
    try:
        decider.COMMAND_PAYLOADS[command_type].model_validate(payload)
    except ValidationError:
        valid = False
    else:
        valid = True
    try:
        decider.decide(stream.state, cmd, ref)
    except DomainError as exc:
        assert exc.code == "invalid" if not valid else exc.code in ("invalid", "not_found", "conflict", "forbidden")
        assert len(exc.message) <= 200
    else:
        assert valid, payload
    assert decider.state_to_dict(stream.state) == before
    assert (decider.message_ref_to_dict(ref) if ref else None) == ref_before
