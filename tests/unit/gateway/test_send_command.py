"""The "send a command" use case (api/send_command.py) over fakes of its two ports."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api.send_command import Command, CommandRefused, SendCommand
from domain.envelope import CommandEnvelope, Outcome
from tests.contracts.command_sender import CommandSenderContract
from tests.unit.gateway.fakes import InMemoryCommandSender


class FakeSender:
    instance_id = "gateway-test"

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.sent: list[tuple[CommandEnvelope, float]] = []

    async def execute(self, envelope: CommandEnvelope, timeout: float) -> Outcome:  # noqa: ASYNC109
        self.sent.append((envelope, timeout))
        return self.outcome.model_copy(update={"command_id": envelope.command_id})


class FakeWaiter:
    """Answers as the applied-versions feed would: either it saw the version, or the bound passed
    and the one fallback query decides."""

    def __init__(self, feed_saw_it: bool) -> None:
        self.feed_saw_it = feed_saw_it
        self.waits: list[tuple[str, int, float]] = []

    async def wait(
        self, stream_id: str, version: int, timeout_s: float, fallback: Callable[[], Awaitable[bool]]
    ) -> bool:
        self.waits.append((stream_id, version, timeout_s))
        return True if self.feed_saw_it else await fallback()


def ok(data: dict[str, Any]) -> Outcome:
    return Outcome(command_id="x", correlation_id="c", ok=True, data=data)


def refused(code: str, message: str = "no") -> Outcome:
    return Outcome(command_id="x", correlation_id="c", ok=False, error_code=code, error_message=message)


def command(**changes: Any) -> Command:
    fields: dict[str, Any] = {
        "type": "message:send",
        "aggregate_id": "conversation:c1",
        "actor_id": "u1",
        "correlation_id": "cid-1",
        "payload": {"conversation_id": "c1", "body": "hi"},
        "command_id": "6f0c54b4-8d1a-4a43-9d0e-1f7e0c0f2b11",
        "expected_version": 3,
    }
    fields.update(changes)
    return Command(**fields)


async def never_shown(stream_id: str, version: int) -> bool:
    return False


async def test_the_envelope_carries_what_the_adapter_knows_and_replies_to_this_gateway() -> None:
    sender = FakeSender(ok({"version": 4}))
    send = SendCommand(sender, FakeWaiter(True), timeout_s=7.0, visible_within_s=2.0)
    assert await send(command()) == {"version": 4}
    (envelope, timeout), *_ = sender.sent
    assert timeout == 7.0
    assert (envelope.type, envelope.aggregate_id, envelope.actor_id) == ("message:send", "conversation:c1", "u1")
    assert envelope.command_id == "6f0c54b4-8d1a-4a43-9d0e-1f7e0c0f2b11"
    assert (envelope.expected_version, envelope.correlation_id, envelope.reply_to) == (3, "cid-1", "gateway-test")
    assert envelope.payload == {"conversation_id": "c1", "body": "hi"}


async def test_a_command_without_an_id_gets_a_fresh_one_each_time() -> None:
    sender = FakeSender(ok({}))
    send = SendCommand(sender, FakeWaiter(True), timeout_s=1.0, visible_within_s=1.0)
    await send(command(command_id=None))
    await send(command(command_id=None))
    first, second = (envelope.command_id for envelope, _ in sender.sent)
    assert first != second


async def test_success_waits_for_the_reported_version_of_the_commands_stream() -> None:
    waiter = FakeWaiter(True)
    send = SendCommand(FakeSender(ok({"version": 9, "seq": 5})), waiter, timeout_s=1.0, visible_within_s=2.0)
    assert await send(command(), never_shown) == {"version": 9, "seq": 5}
    assert waiter.waits == [("conversation:c1", 9, 2.0)]
    await send(command(), never_shown, within_s=5.0)
    assert waiter.waits[-1] == ("conversation:c1", 9, 5.0)


async def test_the_fallback_query_is_asked_with_the_stream_and_version(caplog: pytest.LogCaptureFixture) -> None:
    asked: list[tuple[str, int]] = []

    async def shown(stream_id: str, version: int) -> bool:
        asked.append((stream_id, version))
        return False

    send = SendCommand(FakeSender(ok({"version": 2})), FakeWaiter(False), timeout_s=1.0, visible_within_s=0.1)
    with caplog.at_level(logging.WARNING, logger="parley.gateway.commands"):
        # The read models lag: the answer still goes out (the command succeeded), with a warning.
        assert await send(command(), shown) == {"version": 2}
    assert asked == [("conversation:c1", 2)]
    assert "had not reached conversation:c1 v2" in caplog.text


async def test_no_wait_without_a_check_or_without_a_version() -> None:
    waiter = FakeWaiter(True)
    await SendCommand(FakeSender(ok({"version": 2})), waiter, 1.0, 1.0)(command())
    await SendCommand(FakeSender(ok({})), waiter, 1.0, 1.0)(command(), never_shown)
    await SendCommand(FakeSender(ok({"version": True})), waiter, 1.0, 1.0)(command(), never_shown)
    assert waiter.waits == []


@pytest.mark.parametrize("code", ["invalid", "forbidden", "not_found", "conflict", "unavailable", "internal"])
async def test_a_refusal_keeps_the_protocols_code_and_message(code: str) -> None:
    waiter = FakeWaiter(True)
    send = SendCommand(FakeSender(refused(code, f"because {code}")), waiter, 1.0, 1.0)
    with pytest.raises(CommandRefused) as caught:
        await send(command(), never_shown)
    assert (caught.value.code, caught.value.message) == (code, f"because {code}")
    assert waiter.waits == []


async def test_a_refusal_with_a_code_outside_the_protocol_is_internal() -> None:
    send = SendCommand(FakeSender(refused("exploded", "boom")), FakeWaiter(True), 1.0, 1.0)
    with pytest.raises(CommandRefused) as caught:
        await send(command())
    assert caught.value.code == "internal"


class TestInMemoryCommandSender(CommandSenderContract):
    @pytest.fixture
    def sender(self) -> InMemoryCommandSender:
        return InMemoryCommandSender()
