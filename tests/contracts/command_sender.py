"""The CommandSender contract (api/send_command.py), run against every adapter of it: the Kafka
command bus with the session platform's worker deciding, and the in-memory sender of unit tests
that runs the same handler over dicts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from api.send_command import CommandSender
from domain.conversation import create_target_stream
from domain.envelope import CommandEnvelope, Outcome

TIMEOUT_S = 15.0


def envelope(
    sender: CommandSender,
    command_type: str,
    aggregate_id: str,
    actor_id: str,
    payload: dict[str, Any],
    command_id: str | None = None,
    expected_version: int | None = None,
) -> CommandEnvelope:
    return CommandEnvelope(
        command_id=command_id or str(uuid.uuid4()),
        type=command_type,
        aggregate_id=aggregate_id,
        actor_id=actor_id,
        correlation_id=str(uuid.uuid4()),
        expected_version=expected_version,
        issued_at=datetime.now(UTC),
        payload=payload,
        reply_to=sender.instance_id,
    )


async def send(sender: CommandSender, stream: str, actor_id: str, payload: dict[str, Any], **control: Any) -> Outcome:
    """A ``message:send`` (``control``: command_id, expected_version)."""
    return await sender.execute(envelope(sender, "message:send", stream, actor_id, payload, **control), TIMEOUT_S)


async def new_group(sender: CommandSender, actor_id: str) -> tuple[str, Outcome]:
    """A group of one (its creator); the stream id and the create's outcome."""
    command_id = str(uuid.uuid4())
    payload = {"kind": "group", "participant_ids": [], "title": "contract"}
    stream = create_target_stream(actor_id, command_id, payload)
    outcome = await sender.execute(
        envelope(sender, "conversation:create", stream, actor_id, payload, command_id), TIMEOUT_S
    )
    return stream, outcome


class CommandSenderContract:
    """Subclasses provide a ``sender`` fixture (started, with a worker deciding behind it)."""

    async def test_the_outcome_answers_this_command(self, sender: CommandSender) -> None:
        actor = str(uuid.uuid4())
        stream, created = await new_group(sender, actor)
        assert created.ok, created
        assert created.data["conversation_id"] == stream.removeprefix("conversation:")
        assert created.data["version"] == 1
        sent = envelope(
            sender, "message:send", stream, actor, {"conversation_id": created.data["conversation_id"], "body": "hi"}
        )
        outcome = await sender.execute(sent, TIMEOUT_S)
        assert (outcome.ok, outcome.command_id, outcome.correlation_id) == (True, sent.command_id, sent.correlation_id)
        assert (outcome.data["seq"], outcome.data["version"]) == (1, 2)

    async def test_the_same_command_id_gets_the_same_outcome_and_appends_nothing(self, sender: CommandSender) -> None:
        actor = str(uuid.uuid4())
        stream, created = await new_group(sender, actor)
        conversation_id = created.data["conversation_id"]
        payload = {"conversation_id": conversation_id, "body": "once"}
        first = await sender.execute(
            envelope(sender, "message:send", stream, actor, payload, "c0ffee00-0000-4000-8000-000000000001"), TIMEOUT_S
        )
        again = await sender.execute(
            envelope(sender, "message:send", stream, actor, payload, "c0ffee00-0000-4000-8000-000000000001"), TIMEOUT_S
        )
        assert first.ok and again.ok
        assert again.data == first.data
        # Nothing was appended by the repeat: the next message takes the next seq.
        nxt = await send(sender, stream, actor, payload)
        assert (nxt.data["seq"], nxt.data["version"]) == (first.data["seq"] + 1, first.data["version"] + 1)

    async def test_an_expected_version_that_is_not_the_streams_is_a_conflict(self, sender: CommandSender) -> None:
        actor = str(uuid.uuid4())
        stream, created = await new_group(sender, actor)
        payload = {"conversation_id": created.data["conversation_id"], "body": "hi"}
        stale = await sender.execute(
            envelope(sender, "message:send", stream, actor, payload, expected_version=0), TIMEOUT_S
        )
        assert (stale.ok, stale.error_code) == (False, "conflict")
        current = await sender.execute(
            envelope(sender, "message:send", stream, actor, payload, expected_version=1), TIMEOUT_S
        )
        assert current.ok and current.data["version"] == 2

    async def test_a_refusal_names_the_protocols_code(self, sender: CommandSender) -> None:
        actor, stranger = str(uuid.uuid4()), str(uuid.uuid4())
        stream, created = await new_group(sender, actor)
        payload = {"conversation_id": created.data["conversation_id"], "body": "let me in"}
        outcome = await send(sender, stream, stranger, payload)
        assert (outcome.ok, outcome.error_code) == (False, "not_found")
        blank = {"conversation_id": created.data["conversation_id"], "body": "   "}
        outcome = await send(sender, stream, actor, blank)
        assert (outcome.ok, outcome.error_code) == (False, "invalid")
