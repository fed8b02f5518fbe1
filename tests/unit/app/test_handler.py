"""The command handler: versions, idempotency by command_id, refusals, bounded aggregate records."""

from __future__ import annotations

from commands.handler import RECENT_OUTCOMES, apply_result, handle, stored_outcome
from domain.conversation import conversation_stream_id
from domain.envelope import Outcome
from tests.unit.app.scenario import USERS, Scenario

A, B, C, _ = USERS


def test_events_are_numbered_and_ids_derive_from_the_command() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    r = s.on(conv, "message:send", A, body="hi")
    assert r.outcome.ok
    (event,) = r.events
    assert event.stream_id == conversation_stream_id(conv)
    assert event.stream_version == 2 and r.outcome.data["version"] == 2 and r.outcome.data["seq"] == 1
    assert event.causation_id == r.outcome.command_id
    again = handle(s.command("x", "y", A, {}).model_copy(update={}), s.stores)  # unrelated: refused, no crash
    assert not again.outcome.ok and again.outcome.error_code == "invalid"


def test_same_command_id_returns_same_outcome_and_appends_nothing() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    cmd = s.command("message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "once"})
    first = s.run(cmd)
    before = len(s.log)
    second = s.run(cmd)
    assert second.repeated and second.events == []
    assert second.outcome.data == first.outcome.data
    assert len(s.log) == before


def test_redecided_command_after_lost_state_yields_identical_events() -> None:
    """At-least-once: a crash after appending but before saving state re-decides identically."""
    s = Scenario()
    conv = s.create_direct(A, B)
    cmd = s.command("message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "dup"})
    first = handle(cmd, s.stores)  # events appended, then the worker dies: apply_result never ran
    second = handle(cmd, s.stores)
    assert [e.model_dump() for e in first.events] == [e.model_dump() for e in second.events]


def test_refusal_is_remembered_and_changes_nothing() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    cmd = s.command("message:send", conversation_stream_id(conv), C, {"conversation_id": conv, "body": "x"})
    r = s.run(cmd)
    assert not r.outcome.ok and r.outcome.error_code == "not_found" and r.events == []
    assert r.rejection is not None and r.rejection.stage == "domain" and r.rejection.actor_id == C
    assert s.run(cmd).outcome.error_code == "not_found"


def test_expected_version_conflict() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    stale = s.command(
        "message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "x"}, expected_version=0
    )
    assert s.run(stale).outcome.error_code == "conflict"
    fresh = s.command(
        "message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "x"}, expected_version=1
    )
    assert s.run(fresh).outcome.ok


def test_aggregate_record_stays_bounded_with_many_messages() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    for i in range(RECENT_OUTCOMES * 3):
        assert s.on(conv, "message:send", A, body=f"m{i}").outcome.ok
    record = s.stores.aggregates.get(conversation_stream_id(conv))
    assert record is not None
    assert len(record["recent"]) == RECENT_OUTCOMES
    assert "messages" not in record["state"]
    assert len(repr(record["state"])) < 2000


def test_edit_uses_the_message_index() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    sent = s.on(conv, "message:send", A, body="v1")
    mid = sent.outcome.data["message_id"]
    assert s.on(conv, "message:edit", B, message_id=mid, body="hijack").outcome.error_code == "forbidden"
    assert s.on(conv, "message:edit", A, message_id=mid, body="v2").outcome.ok
    assert s.on(conv, "message:delete", A, message_id=mid).outcome.ok
    ref = s.stores.messages.get(mid)
    assert ref is not None and ref["deleted"] is True


def test_apply_result_of_repeat_writes_nothing() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    cmd = s.command("message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "x"})
    s.run(cmd)
    snapshot = dict(s.stores.aggregates.data)  # type: ignore[attr-defined]
    repeat = handle(cmd, s.stores)
    apply_result(cmd, repeat, s.stores)
    assert s.stores.aggregates.data == snapshot  # type: ignore[attr-defined]


def test_a_command_id_reused_elsewhere_is_a_different_command() -> None:
    s = Scenario()
    first, second = s.create_direct(A, B), s.create_direct(A, C)
    shared = "4b0c3f0e-0000-4000-8000-000000000001"
    one = s.run(
        s.command("message:send", conversation_stream_id(first), A, {"conversation_id": first, "body": "x"}, shared)
    )
    two = s.run(
        s.command("message:send", conversation_stream_id(second), A, {"conversation_id": second, "body": "y"}, shared)
    )
    assert one.outcome.ok and two.outcome.ok and not two.repeated
    assert one.outcome.data["message_id"] != two.outcome.data["message_id"]
    assert {e.event_id for e in one.events}.isdisjoint(e.event_id for e in two.events)


def test_another_user_reusing_a_command_id_does_not_get_its_ack() -> None:
    s = Scenario()
    conv = s.create_group(A, [B], "team")
    shared = "4b0c3f0e-0000-4000-8000-000000000002"
    mine = s.run(
        s.command("message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "a"}, shared)
    )
    theirs = s.run(
        s.command("message:send", conversation_stream_id(conv), B, {"conversation_id": conv, "body": "b"}, shared)
    )
    assert not theirs.repeated and theirs.outcome.data["seq"] == mine.outcome.data["seq"] + 1


def test_an_outcome_saved_ahead_of_a_lost_aggregate_save_is_not_trusted() -> None:
    """Separate changelogs: the outcome's write survived a crash, the aggregate's did not."""
    s = Scenario()
    conv = s.create_direct(A, B)
    cmd = s.command("message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "x"})
    result = handle(cmd, s.stores)
    s.stores.outcomes.put(cmd.key, result.outcome.model_dump(mode="json"))  # only this write landed
    again = handle(cmd, s.stores)
    assert not again.repeated, "re-decided, so the state gets the events it misses"
    assert [e.model_dump() for e in again.events] == [e.model_dump() for e in result.events]


def test_a_stored_outcome_keeps_no_empty_field_and_reads_back_equal() -> None:
    ok = Outcome(command_id="c", correlation_id="r", ok=True, data={"seq": 3, "version": 4}, reply_to="gw-1")
    refused = Outcome(
        command_id="d", correlation_id="s", ok=False, error_code="conflict", error_message="v2", reply_to="gw-1"
    )
    assert stored_outcome(ok) == {
        "command_id": "c",
        "correlation_id": "r",
        "ok": True,
        "data": {"seq": 3, "version": 4},
    }
    assert Outcome.model_validate(stored_outcome(ok)) == ok.model_copy(update={"reply_to": None})
    assert Outcome.model_validate(stored_outcome(refused)) == refused.model_copy(update={"reply_to": None})
    # An outcome stored by an earlier release, with its empty fields, reads the same.
    earlier = ok.model_copy(update={"reply_to": None}).model_dump(mode="json")
    assert Outcome.model_validate(earlier) == Outcome.model_validate(stored_outcome(ok))
