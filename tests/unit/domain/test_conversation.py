"""Each conversation command: its happy path and each refusal."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain import decider
from domain.catalog import CATALOG, parse_payload
from domain.conversation import (
    MAX_BODY,
    MAX_PARTICIPANTS,
    MAX_REACTION_KINDS,
    ConversationState,
    MessageRef,
    conversation_id_of,
    conversation_stream_id,
    create_target_stream,
    direct_conversation_id,
)
from domain.envelope import derive_id, iso
from domain.errors import DomainError
from tests.unit.domain.harness import Result, Stream, command

ALICE, BOB, CAROL, DAVE, EVE = (f"user-{name}" for name in ("alice", "bob", "carol", "dave", "eve"))


def run(
    stream: Stream, type_: str, actor: str | None, *, expected_version: int | None = None, **payload: Any
) -> Result:
    if type_ != "conversation:create":
        payload.setdefault("conversation_id", conversation_id_of(stream.stream_id))
    return stream.run(command(type_, actor, stream.stream_id, payload, expected_version=expected_version))


def state(stream: Stream) -> ConversationState:
    assert isinstance(stream.state, ConversationState)
    return stream.state


def refused(result: Result, code: str) -> None:
    assert not result.ok, result
    assert result.code == code, result
    assert result.events == ()


def new_group(*others: str, title: str = "Team") -> Stream:
    stream = Stream(conversation_stream_id(str(uuid.uuid4())))
    result = run(
        stream, "conversation:create", ALICE, kind="group", participant_ids=list(others or (BOB, CAROL)), title=title
    )
    assert result.ok, result
    return stream


def new_direct(actor: str = ALICE, peer: str = BOB) -> Stream:
    stream = Stream(conversation_stream_id(direct_conversation_id(actor, peer)))
    assert run(stream, "conversation:create", actor, kind="direct", participant_ids=[peer]).ok
    return stream


def send(stream: Stream, actor: str, body: str = "hello") -> str:
    result = run(stream, "message:send", actor, body=body)
    assert result.ok, result
    return str(result.data["message_id"])


def types(result: Result) -> list[str]:
    return [event.type for event in result.events]


def roles(stream: Stream) -> dict[str, str]:
    return {user: member.role for user, member in state(stream).members.items()}


# -- ids -------------------------------------------------------------------------------------------


def test_direct_conversation_id_is_symmetric_and_per_pair() -> None:
    assert direct_conversation_id(ALICE, BOB) == direct_conversation_id(BOB, ALICE)
    assert direct_conversation_id(ALICE, BOB) != direct_conversation_id(ALICE, CAROL)
    uuid.UUID(direct_conversation_id(ALICE, BOB))


def test_stream_ids_round_trip_and_refuse_other_prefixes() -> None:
    assert conversation_id_of(conversation_stream_id("abc")) == "abc"
    for bad in ("username:abc", "conversation:", "abc"):
        with pytest.raises(ValueError):
            conversation_id_of(bad)


def test_create_target_stream() -> None:
    direct = {"kind": "direct", "participant_ids": [BOB]}
    assert create_target_stream(ALICE, "c1", direct) == conversation_stream_id(direct_conversation_id(ALICE, BOB))
    group = {"kind": "group", "participant_ids": [], "title": "x"}
    assert create_target_stream(ALICE, "c1", group) == conversation_stream_id(derive_id(f"{ALICE}|c1", "conversation"))
    assert create_target_stream(BOB, "c1", group) != create_target_stream(ALICE, "c1", group)
    with pytest.raises(DomainError) as info:
        create_target_stream(ALICE, "c1", {"kind": "direct", "participant_ids": [ALICE]})
    assert info.value.code == "invalid"


# -- conversation:create ---------------------------------------------------------------------------


def test_create_group() -> None:
    stream = Stream(conversation_stream_id(str(uuid.uuid4())))
    cid = conversation_id_of(stream.stream_id)
    result = run(
        stream, "conversation:create", ALICE, kind="group", participant_ids=[BOB, ALICE, BOB, CAROL], title="  Team  "
    )
    assert result.data == {"conversation_id": cid, "version": 1}
    assert types(result) == ["ConversationCreated"]
    assert result.events[0].payload == {
        "conversation_id": cid,
        "kind": "group",
        "title": "Team",
        "created_by": ALICE,
        "participant_ids": [ALICE, BOB, CAROL],
        "admin_ids": [ALICE],
    }
    assert roles(stream) == {ALICE: "admin", BOB: "member", CAROL: "member"}
    assert state(stream).title == "Team" and state(stream).kind == "group"


def test_create_group_of_one() -> None:
    stream = Stream(conversation_stream_id(str(uuid.uuid4())))
    assert run(stream, "conversation:create", ALICE, kind="group", participant_ids=[], title="me").ok
    assert roles(stream) == {ALICE: "admin"}


@pytest.mark.parametrize(
    "payload",
    [
        {"kind": "group", "participant_ids": [BOB]},
        {"kind": "group", "participant_ids": [BOB], "title": "   "},
        {"kind": "group", "participant_ids": [BOB], "title": "x" * 201},
        {"kind": "group", "participant_ids": [f"user-{n}" for n in range(MAX_PARTICIPANTS)], "title": "big"},
        {"kind": "channel", "participant_ids": [BOB], "title": "x"},
        {"kind": "group", "participant_ids": BOB, "title": "x"},
        {"kind": "direct", "participant_ids": []},
        {"kind": "direct", "participant_ids": [ALICE]},
        {"kind": "direct", "participant_ids": [BOB, CAROL]},
    ],
)
def test_create_refuses_invalid_payloads(payload: dict[str, Any]) -> None:
    stream = Stream(conversation_stream_id(direct_conversation_id(ALICE, BOB)))
    refused(run(stream, "conversation:create", ALICE, **payload), "invalid")
    assert state(stream).version == 0


def test_create_group_at_the_participant_limit() -> None:
    stream = Stream(conversation_stream_id(str(uuid.uuid4())))
    others = [f"user-{n}" for n in range(MAX_PARTICIPANTS - 1)]
    assert run(stream, "conversation:create", ALICE, kind="group", participant_ids=[ALICE, *others], title="t").ok
    assert len(state(stream).members) == MAX_PARTICIPANTS


def test_create_group_on_an_existing_stream_conflicts() -> None:
    stream = new_group()
    for actor in (ALICE, DAVE):
        refused(run(stream, "conversation:create", actor, kind="group", participant_ids=[], title="again"), "conflict")


def test_create_checks_expected_version() -> None:
    stream = Stream(conversation_stream_id(str(uuid.uuid4())))
    payload = {"kind": "group", "participant_ids": [], "title": "t"}
    refused(run(stream, "conversation:create", ALICE, expected_version=1, **payload), "conflict")
    assert run(stream, "conversation:create", ALICE, expected_version=0, **payload).ok


def test_create_needs_an_actor() -> None:
    stream = Stream(conversation_stream_id(str(uuid.uuid4())))
    refused(run(stream, "conversation:create", None, kind="group", participant_ids=[], title="t"), "unauthorized")


def test_create_direct() -> None:
    stream = Stream(conversation_stream_id(direct_conversation_id(ALICE, BOB)))
    cid = conversation_id_of(stream.stream_id)
    result = run(stream, "conversation:create", ALICE, kind="direct", participant_ids=[ALICE, BOB], title="ignored")
    assert result.data == {"conversation_id": cid, "version": 1}
    assert result.events[0].payload["participant_ids"] == [ALICE, BOB]
    assert result.events[0].payload["title"] is None
    assert set(state(stream).members) == {ALICE, BOB} and state(stream).kind == "direct"


def test_create_direct_again_returns_it_for_either_participant() -> None:
    stream = new_direct()
    for actor, peer in ((ALICE, BOB), (BOB, ALICE)):
        result = run(stream, "conversation:create", actor, kind="direct", participant_ids=[peer])
        assert result.ok and result.events == ()
        assert result.data == {"conversation_id": conversation_id_of(stream.stream_id), "version": 1}


def test_create_direct_rejoins_a_participant_who_left() -> None:
    stream = new_direct()
    assert run(stream, "conversation:leave", BOB).ok
    result = run(stream, "conversation:create", BOB, kind="direct", participant_ids=[ALICE])
    assert types(result) == ["ParticipantsAdded"]
    assert result.events[0].payload == {
        "conversation_id": conversation_id_of(stream.stream_id),
        "user_ids": [BOB],
        "added_by": BOB,
        "role": "member",
    }
    assert result.data["version"] == 3
    assert set(state(stream).members) == {ALICE, BOB}


def test_create_direct_on_another_pairs_stream_is_invalid() -> None:
    stream = new_direct(ALICE, BOB)
    refused(run(stream, "conversation:create", CAROL, kind="direct", participant_ids=[ALICE]), "invalid")
    refused(run(stream, "conversation:create", ALICE, kind="direct", participant_ids=[CAROL]), "invalid")


def test_create_direct_on_a_group_stream_is_invalid() -> None:
    stream = new_group()
    refused(run(stream, "conversation:create", ALICE, kind="direct", participant_ids=[BOB]), "invalid")


# -- conversation:add-participants -----------------------------------------------------------------


def test_add_participants() -> None:
    stream = new_group(BOB)
    result = run(stream, "conversation:add-participants", ALICE, user_ids=[BOB, CAROL, DAVE, CAROL])
    assert types(result) == ["ParticipantsAdded"]
    assert result.events[0].payload["user_ids"] == [CAROL, DAVE]
    assert result.data == {"version": 2}
    assert roles(stream) == {ALICE: "admin", BOB: "member", CAROL: "member", DAVE: "member"}


def test_add_only_present_participants_appends_nothing() -> None:
    stream = new_group(BOB)
    result = run(stream, "conversation:add-participants", ALICE, user_ids=[ALICE, BOB])
    assert result.ok and result.events == () and result.data == {"version": 1}


def test_add_participants_refusals() -> None:
    stream = new_group(BOB)
    refused(run(stream, "conversation:add-participants", BOB, user_ids=[CAROL]), "forbidden")
    refused(run(stream, "conversation:add-participants", DAVE, user_ids=[CAROL]), "not_found")
    refused(run(stream, "conversation:add-participants", ALICE, user_ids=[]), "invalid")
    refused(run(stream, "conversation:add-participants", ALICE, user_ids=[CAROL], expected_version=0), "conflict")
    direct = new_direct()
    refused(run(direct, "conversation:add-participants", ALICE, user_ids=[CAROL]), "forbidden")


def test_add_beyond_the_participant_limit_conflicts() -> None:
    stream = new_group(*(f"user-{n}" for n in range(MAX_PARTICIPANTS - 2)))
    assert run(stream, "conversation:add-participants", ALICE, user_ids=[BOB]).ok
    refused(run(stream, "conversation:add-participants", ALICE, user_ids=[CAROL]), "conflict")


# -- conversation:remove-participant / leave -------------------------------------------------------


def test_remove_participant() -> None:
    stream = new_group(BOB, CAROL)
    result = run(stream, "conversation:remove-participant", ALICE, user_id=BOB)
    assert types(result) == ["ParticipantRemoved"]
    assert result.events[0].payload == {
        "conversation_id": conversation_id_of(stream.stream_id),
        "user_id": BOB,
        "removed_by": ALICE,
    }
    assert set(state(stream).members) == {ALICE, CAROL}
    refused(run(stream, "message:send", BOB, body="still here?"), "not_found")


def test_remove_participant_refusals() -> None:
    stream = new_group(BOB, CAROL)
    refused(run(stream, "conversation:remove-participant", BOB, user_id=CAROL), "forbidden")
    refused(run(stream, "conversation:remove-participant", BOB, user_id=DAVE), "forbidden")
    refused(run(stream, "conversation:remove-participant", ALICE, user_id=DAVE), "not_found")
    refused(run(stream, "conversation:remove-participant", DAVE, user_id=BOB), "not_found")
    direct = new_direct()
    refused(run(direct, "conversation:remove-participant", ALICE, user_id=BOB), "forbidden")


def test_removing_yourself_is_leaving() -> None:
    stream = new_group(BOB, CAROL)
    result = run(stream, "conversation:remove-participant", BOB, user_id=BOB)
    assert types(result) == ["ParticipantLeft"]
    result = run(stream, "conversation:remove-participant", ALICE, user_id=ALICE)
    assert types(result) == ["ParticipantLeft", "AdminPromoted"]
    assert result.events[1].payload["user_id"] == CAROL


def test_leave() -> None:
    stream = new_group(BOB, CAROL)
    send(stream, BOB)
    assert run(stream, "message:read", BOB, seq=1).ok
    result = run(stream, "conversation:leave", BOB)
    assert types(result) == ["ParticipantLeft"] and result.data == {"version": 4}
    assert BOB not in state(stream).members and BOB not in state(stream).read_markers
    refused(run(stream, "conversation:leave", BOB), "not_found")


def test_last_admin_leaving_promotes_the_longest_standing_member() -> None:
    stream = new_group(BOB, CAROL)
    assert run(stream, "conversation:add-participants", ALICE, user_ids=[DAVE]).ok
    assert run(stream, "conversation:leave", BOB).ok
    result = run(stream, "conversation:leave", ALICE)
    assert types(result) == ["ParticipantLeft", "AdminPromoted"]
    assert result.events[1].payload == {
        "conversation_id": conversation_id_of(stream.stream_id),
        "user_id": CAROL,
        "reason": "last_admin_left",
    }
    assert result.data == {"version": 5}
    assert roles(stream) == {CAROL: "admin", DAVE: "member"}


def test_a_rejoining_member_is_the_newest() -> None:
    stream = new_group(BOB, CAROL)
    assert run(stream, "conversation:remove-participant", ALICE, user_id=BOB).ok
    assert run(stream, "conversation:add-participants", ALICE, user_ids=[BOB]).ok
    result = run(stream, "conversation:leave", ALICE)
    assert result.events[1].payload["user_id"] == CAROL


def test_the_last_participant_leaving_empties_the_group() -> None:
    stream = new_group(BOB)
    assert run(stream, "conversation:leave", BOB).ok
    result = run(stream, "conversation:leave", ALICE)
    assert types(result) == ["ParticipantLeft"]
    assert state(stream).members == {}
    refused(run(stream, "message:send", ALICE, body="anyone?"), "not_found")
    refused(run(stream, "conversation:create", ALICE, kind="group", participant_ids=[], title="t"), "conflict")


def test_leaving_a_direct_conversation_promotes_nobody() -> None:
    stream = new_direct()
    result = run(stream, "conversation:leave", ALICE)
    assert types(result) == ["ParticipantLeft"]
    assert roles(stream) == {BOB: "member"}
    assert run(stream, "message:send", BOB, body="hello?").ok


# -- conversation:rename ---------------------------------------------------------------------------


def test_rename() -> None:
    stream = new_group(BOB)
    result = run(stream, "conversation:rename", ALICE, title=" New name ")
    assert types(result) == ["ConversationRenamed"]
    assert result.events[0].payload["title"] == "New name"
    assert result.events[0].payload["renamed_by"] == ALICE
    assert state(stream).title == "New name"
    same = run(stream, "conversation:rename", ALICE, title="New name")
    assert same.ok and same.events == () and same.data == {"version": 2}


def test_rename_refusals() -> None:
    stream = new_group(BOB)
    refused(run(stream, "conversation:rename", BOB, title="mine"), "forbidden")
    refused(run(stream, "conversation:rename", DAVE, title="mine"), "not_found")
    refused(run(stream, "conversation:rename", ALICE, title=""), "invalid")
    refused(run(stream, "conversation:rename", ALICE, title="x" * 201), "invalid")
    refused(run(new_direct(), "conversation:rename", ALICE, title="ours"), "forbidden")


# -- message:send ----------------------------------------------------------------------------------


def test_send() -> None:
    stream = new_group(BOB)
    cmd = command(
        "message:send", BOB, stream.stream_id, {"conversation_id": conversation_id_of(stream.stream_id), "body": " hi "}
    )
    result = stream.run(cmd)
    message_id = derive_id(cmd.key, "message")
    assert result.data == {"message_id": message_id, "seq": 1, "sent_at": iso(cmd.issued_at), "version": 2}
    assert result.events[0].schema_version == CATALOG["MessageSent"].version == 2
    assert result.events[0].payload == {
        "conversation_id": conversation_id_of(stream.stream_id),
        "message_id": message_id,
        "seq": 1,
        "sender_id": BOB,
        "body": " hi ",
        "format": "plain",
        "sent_at": iso(cmd.issued_at),
    }
    assert state(stream).last_seq == 1
    assert stream.refs[message_id] == MessageRef(
        conversation_id=conversation_id_of(stream.stream_id), message_id=message_id, sender_id=BOB, seq=1
    )


def test_seq_is_gap_free_across_other_events() -> None:
    stream = new_group(BOB)
    send(stream, ALICE)
    assert run(stream, "conversation:rename", ALICE, title="other").ok
    result = run(stream, "message:send", BOB, body="second")
    assert result.data["seq"] == 2 and result.data["version"] == 4


def test_send_body_limits() -> None:
    stream = new_group(BOB)
    assert run(stream, "message:send", BOB, body="x" * MAX_BODY).ok
    for body in ("", "  \n\t", "x" * (MAX_BODY + 1)):
        refused(run(stream, "message:send", BOB, body=body), "invalid")
    refused(run(stream, "message:send", BOB), "invalid")


def test_send_refusals() -> None:
    stream = new_group(BOB)
    refused(run(stream, "message:send", DAVE, body="hi"), "not_found")
    refused(run(stream, "message:send", BOB, body="hi", expected_version=7), "conflict")
    refused(run(stream, "message:send", BOB, body="hi", conversation_id="elsewhere"), "invalid")
    nothing = Stream(conversation_stream_id(str(uuid.uuid4())))
    refused(run(nothing, "message:send", ALICE, body="hi"), "not_found")


def test_a_non_participant_with_a_stale_version_learns_nothing() -> None:
    stream = new_group(BOB)
    refused(run(stream, "message:send", DAVE, body="hi", expected_version=99), "not_found")


# -- message:edit / delete -------------------------------------------------------------------------


def test_edit() -> None:
    stream = new_group(BOB)
    message_id = send(stream, BOB)
    result = run(stream, "message:edit", BOB, message_id=message_id, body="fixed")
    assert types(result) == ["MessageEdited"] and result.data == {"version": 3}
    payload = result.events[0].payload
    assert payload["body"] == "fixed" and payload["seq"] == 1 and payload["sender_id"] == BOB
    assert payload["edited_at"] == iso(result.events[0].occurred_at)


def test_edit_refusals() -> None:
    stream = new_group(BOB, CAROL)
    message_id = send(stream, BOB)
    refused(run(stream, "message:edit", CAROL, message_id=message_id, body="mine"), "forbidden")
    refused(run(stream, "message:edit", ALICE, message_id=message_id, body="admin"), "forbidden")
    refused(run(stream, "message:edit", DAVE, message_id=message_id, body="x"), "not_found")
    refused(run(stream, "message:edit", BOB, message_id="unknown", body="x"), "not_found")
    refused(run(stream, "message:edit", BOB, message_id=message_id, body=""), "invalid")
    assert run(stream, "message:delete", BOB, message_id=message_id).ok
    refused(run(stream, "message:edit", BOB, message_id=message_id, body="undo"), "conflict")


def test_a_message_of_another_conversation_is_not_found() -> None:
    stream, other = new_group(BOB), new_group(BOB)
    message_id = send(other, BOB)
    ref = other.refs[message_id]
    payload = {"conversation_id": conversation_id_of(stream.stream_id), "message_id": message_id, "body": "x"}
    with pytest.raises(DomainError) as info:
        decider.decide(stream.state, command("message:edit", BOB, stream.stream_id, payload), ref)
    assert info.value.code == "not_found"


def test_delete_is_idempotent() -> None:
    stream = new_group(BOB)
    message_id = send(stream, BOB)
    result = run(stream, "message:delete", BOB, message_id=message_id)
    assert types(result) == ["MessageDeleted"] and result.data == {"version": 3}
    assert stream.refs[message_id].deleted
    again = run(stream, "message:delete", BOB, message_id=message_id)
    assert again.ok and again.events == () and again.data == {"version": 3}


def test_delete_refusals() -> None:
    stream = new_group(BOB, CAROL)
    message_id = send(stream, BOB)
    refused(run(stream, "message:delete", CAROL, message_id=message_id), "forbidden")
    refused(run(stream, "message:delete", DAVE, message_id=message_id), "not_found")
    refused(run(stream, "message:delete", BOB, message_id="unknown"), "not_found")
    refused(run(stream, "message:delete", BOB, message_id=message_id, expected_version=1), "conflict")


# -- message:react ---------------------------------------------------------------------------------


def test_react_toggles() -> None:
    stream = new_group(BOB, CAROL)
    message_id = send(stream, BOB)
    for actor in (CAROL, ALICE):
        result = run(stream, "message:react", actor, message_id=message_id, emoji="👍", on=True)
        assert types(result) == ["ReactionChanged"]
    assert stream.refs[message_id].reactions == {"👍": (ALICE, CAROL)}
    same = run(stream, "message:react", CAROL, message_id=message_id, emoji="👍", on=True)
    assert same.ok and same.events == () and same.data == {"version": 4}
    off = run(stream, "message:react", CAROL, message_id=message_id, emoji="👍", on=False)
    assert off.events[0].payload["on"] is False
    assert stream.refs[message_id].reactions == {"👍": (ALICE,)}
    absent = run(stream, "message:react", CAROL, message_id=message_id, emoji="🎉", on=False)
    assert absent.ok and absent.events == ()


def test_react_refusals() -> None:
    stream = new_group(BOB)
    message_id = send(stream, BOB)
    refused(run(stream, "message:react", DAVE, message_id=message_id, emoji="👍", on=True), "not_found")
    refused(run(stream, "message:react", BOB, message_id="unknown", emoji="👍", on=True), "not_found")
    for emoji in ("", " ", "x" * 33, "ok", "👍" * 33, "👍 ", "+1"):
        refused(run(stream, "message:react", BOB, message_id=message_id, emoji=emoji, on=True), "invalid")
    refused(run(stream, "message:react", BOB, message_id=message_id, emoji="👍", on="yes"), "invalid")
    assert run(stream, "message:delete", BOB, message_id=message_id).ok
    refused(run(stream, "message:react", BOB, message_id=message_id, emoji="👍", on=True), "conflict")


def test_reaction_kinds_per_message_are_bounded() -> None:
    stream = new_group(BOB)
    message_id = send(stream, BOB)
    for n in range(MAX_REACTION_KINDS):
        assert run(stream, "message:react", BOB, message_id=message_id, emoji=chr(0x1F400 + n), on=True).ok
    refused(run(stream, "message:react", BOB, message_id=message_id, emoji="🫠", on=True), "conflict")
    assert run(stream, "message:react", ALICE, message_id=message_id, emoji=chr(0x1F400), on=True).ok


# -- message:read ----------------------------------------------------------------------------------


def test_read_marker_moves_forward_only_and_is_clamped() -> None:
    stream = new_group(BOB)
    for _ in range(3):
        send(stream, ALICE)
    result = run(stream, "message:read", BOB, seq=2)
    assert types(result) == ["ReadMarkerMoved"] and result.data == {"version": 5}
    assert result.events[0].payload == {
        "conversation_id": conversation_id_of(stream.stream_id),
        "user_id": BOB,
        "seq": 2,
    }
    back = run(stream, "message:read", BOB, seq=1)
    assert back.ok and back.events == ()
    beyond = run(stream, "message:read", BOB, seq=1000)
    assert beyond.events[0].payload["seq"] == 3
    assert state(stream).read_markers == {BOB: 3}
    again = run(stream, "message:read", BOB, seq=1000)
    assert again.ok and again.events == ()


def test_read_refusals() -> None:
    stream = new_group(BOB)
    send(stream, ALICE)
    refused(run(stream, "message:read", DAVE, seq=1), "not_found")
    for seq in (-1, "1", True, 1.0, None):
        refused(run(stream, "message:read", BOB, seq=seq), "invalid")


# -- routing ---------------------------------------------------------------------------------------


def test_unknown_and_misrouted_commands_are_invalid() -> None:
    stream = new_group(BOB)
    refused(run(stream, "message:shout", ALICE, body="x"), "invalid")
    refused(run(stream, "typing", ALICE, on=True), "invalid")
    user_payload = {"user_id": "u", "username": "alice", "password_hash": "h"}
    refused(stream.run(command("user:register", None, stream.stream_id, user_payload)), "invalid")


def test_a_command_for_another_stream_is_a_handler_bug() -> None:
    stream = new_group(BOB)
    payload = {"conversation_id": "x", "body": "hi"}
    with pytest.raises(ValueError):
        decider.decide(stream.state, command("message:send", ALICE, conversation_stream_id("x"), payload), None)


def test_extra_payload_fields_are_ignored() -> None:
    stream = new_group(BOB)
    payload = {
        "conversation_id": conversation_id_of(stream.stream_id),
        "body": "hi",
        **{"command_id": "c", "expected_version": 3, "correlation_id": "k", "format": "html"},
    }
    result = stream.run(command("message:send", BOB, stream.stream_id, payload))
    assert result.ok
    assert result.events[0].payload["format"] == "plain"


def test_every_emitted_payload_matches_the_catalog() -> None:
    stream = new_group(BOB, CAROL)
    message_id = send(stream, BOB)
    run(stream, "message:edit", BOB, message_id=message_id, body="b")
    run(stream, "message:react", CAROL, message_id=message_id, emoji="👍", on=True)
    run(stream, "message:read", CAROL, seq=1)
    run(stream, "message:delete", BOB, message_id=message_id)
    media: dict[str, Any] = {
        "media_id": "m1",
        "object_key": "k" * 32,
        "filename": "a.png",
        "content_type": "image/png",
        "size": 3,
    }
    assert run(stream, "media:request-upload", BOB, expires_in_s=60, **media).ok
    assert run(
        stream, "media:upload-complete", BOB, media_id="m1", observed_size=3, observed_content_type="image/png"
    ).ok
    assert run(stream, "message:send", BOB, body="file", media_ids=["m1"]).ok
    assert run(stream, "media:delete", BOB, media_id="m1").ok
    run(stream, "conversation:rename", ALICE, title="t2")
    run(stream, "conversation:add-participants", ALICE, user_ids=[DAVE])
    run(stream, "conversation:remove-participant", ALICE, user_id=DAVE)
    run(stream, "conversation:leave", ALICE)
    seen = {event.type for event in stream.log}
    assert seen == {name for name, spec in CATALOG.items() if spec.aggregate == "conversation"}
    for event in stream.log:
        assert event.schema_version == CATALOG[event.type].version
        parse_payload(event.type, event.payload)
