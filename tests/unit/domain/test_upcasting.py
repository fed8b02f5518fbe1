"""The catalogue, the upcaster chain, and a stored v1 log folding into today's state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain import decider
from domain.catalog import CATALOG, HISTORIC, NewEvent, current_version, parse_payload, payload_model
from domain.conversation import ConversationState, Member, MessageRef
from domain.envelope import EventEnvelope
from domain.upcasting import UPCASTERS, upcast
from domain.users import UsernameState
from tests.unit.domain.harness import fold, fold_messages

FIXTURE = Path(__file__).parent / "fixtures" / "v1_log.jsonl"
CONVERSATION = "3f0e9a52-7c1d-4b8e-9a61-0d2c5e4b7f10"
ALICE, BOB, CAROL = (
    "8a4c1e2f-1111-4a4a-8a8a-000000000001",
    "8a4c1e2f-2222-4b4b-8b8b-000000000002",
    "8a4c1e2f-3333-4c4c-8c8c-000000000003",
)
M1, M2, M3 = (
    "e0168c64-58a5-567e-99b4-33c56569a371",
    "bf52bca1-cb79-5ead-992b-df1f397757cd",
    "5be3f751-1059-55ec-a57d-3cf439032969",
)


def stored_log() -> list[EventEnvelope]:
    return [EventEnvelope.model_validate_json(line) for line in FIXTURE.read_text("utf-8").splitlines() if line]


def v1_message_sent(**payload: object) -> EventEnvelope:
    return EventEnvelope(
        event_id="e1",
        type="MessageSent",
        schema_version=1,
        stream_id=f"conversation:{CONVERSATION}",
        stream_version=2,
        occurred_at=datetime(2023, 11, 5, 10, 1, tzinfo=UTC),
        actor_id=ALICE,
        correlation_id="k",
        causation_id="c",
        payload={"message_id": M1, "seq": 1, "sender_id": ALICE, "text": "hi", "sent_at": "2023-11-05T10:01:00.000Z"}
        | payload,
    )


def test_every_superseded_version_has_an_upcaster_and_a_model() -> None:
    for spec in CATALOG.values():
        for version in range(1, spec.version):
            assert (spec.event_type, version) in UPCASTERS
            assert (spec.event_type, version) in HISTORIC
    assert current_version("MessageSent") == 2
    assert all(spec.version == 1 for name, spec in CATALOG.items() if name != "MessageSent")


def test_message_sent_v1_upcasts_to_v2() -> None:
    event = upcast(v1_message_sent())
    assert event.schema_version == 2
    assert event.payload == {
        "conversation_id": CONVERSATION,
        "message_id": M1,
        "seq": 1,
        "sender_id": ALICE,
        "body": "hi",
        "format": "plain",
        "sent_at": "2023-11-05T10:01:00.000Z",
    }
    parse_payload("MessageSent", event.payload)
    assert upcast(event) == event


def test_upcasting_leaves_the_stored_event_alone() -> None:
    stored = v1_message_sent()
    upcast(stored)
    assert stored.schema_version == 1 and "text" in stored.payload


def test_unknown_types_pass_and_future_versions_fail() -> None:
    unknown = v1_message_sent().model_copy(update={"type": "SomethingNew", "schema_version": 9})
    assert upcast(unknown) == unknown
    with pytest.raises(ValueError):
        upcast(v1_message_sent().model_copy(update={"schema_version": 3}))
    with pytest.raises(ValueError):
        upcast(v1_message_sent().model_copy(update={"schema_version": 0}))


def test_payload_models_by_version() -> None:
    assert payload_model("MessageSent", 1) is HISTORIC[("MessageSent", 1)]
    assert payload_model("MessageSent") is CATALOG["MessageSent"].model
    with pytest.raises(ValueError):
        payload_model("MessageSent", 7)
    with pytest.raises(ValueError):
        payload_model("Nope")


def test_new_events_carry_the_current_schema_version() -> None:
    assert NewEvent("MessageSent", {}).schema_version == 2
    assert NewEvent("ParticipantLeft", {}).schema_version == 1
    with pytest.raises(ValueError):
        NewEvent("Nope", {})


def test_the_stored_v1_log_upcasts_to_valid_current_payloads() -> None:
    log = stored_log()
    assert any(event.type == "MessageSent" and event.schema_version == 1 for event in log)
    for event in log:
        parse_payload(event.type, event.payload, event.schema_version)  # as stored
        current = upcast(event)
        assert current.schema_version == CATALOG[event.type].version
        parse_payload(current.type, current.payload)


def test_the_stored_v1_log_folds_into_todays_state() -> None:
    log = stored_log()
    stream_id = f"conversation:{CONVERSATION}"
    conversation = [event for event in log if event.stream_id == stream_id]
    assert fold(stream_id, conversation) == ConversationState(
        conversation_id=CONVERSATION,
        version=11,
        created=True,
        kind="group",
        title="Fixture team",
        members={BOB: Member(role="admin", joined=1), CAROL: Member(role="member", joined=2)},
        next_join=3,
        last_seq=3,
        read_markers={BOB: 2, CAROL: 3},
    )
    # folding already-upcast events gives the same state
    assert fold(stream_id, [upcast(event) for event in conversation]) == fold(stream_id, conversation)
    assert fold_messages(conversation) == {
        M1: MessageRef(conversation_id=CONVERSATION, message_id=M1, sender_id=ALICE, seq=1),
        M2: MessageRef(
            conversation_id=CONVERSATION, message_id=M2, sender_id=BOB, seq=2, deleted=True, reactions={"👍": (CAROL,)}
        ),
        M3: MessageRef(conversation_id=CONVERSATION, message_id=M3, sender_id=CAROL, seq=3),
    }
    users = {event.stream_id: fold(event.stream_id, [event]) for event in log if event.type == "UserRegistered"}
    # A log written before the names were hashed: its streams still fold (their key is the name).
    assert users["username:alice"] == UsernameState(name_key="alice", version=1, user_id=ALICE)
    assert set(users) == {"username:alice", "username:bob", "username:carol.k"}


def test_deciding_on_a_state_folded_from_the_v1_log() -> None:
    from tests.unit.domain.harness import Stream, command

    stream = Stream(f"conversation:{CONVERSATION}")
    stream.append(stored_log()[3:])
    assert stream.state.version == 11
    result = stream.run(
        command("message:send", CAROL, stream.stream_id, {"conversation_id": CONVERSATION, "body": "after"})
    )
    assert result.data["seq"] == 4 and result.data["version"] == 12
    assert (
        stream.run(
            command(
                "message:edit",
                ALICE,
                stream.stream_id,
                {"conversation_id": CONVERSATION, "message_id": M1, "body": "x"},
            )
        ).code
        == "not_found"
    )  # Alice left
    edit = {"conversation_id": CONVERSATION, "message_id": M3, "body": "bye!"}
    assert stream.run(command("message:edit", CAROL, stream.stream_id, edit)).ok
    assert isinstance(decider.state_from_dict(decider.state_to_dict(stream.state)), ConversationState)
