"""The one "send a command" use case of the gateway, shared by the socket handlers and the HTTP routers.

It builds the command envelope, hands it to the command bus, waits for the worker's outcome, maps a
refusal to the protocol's error codes, and then waits (bounded) until the read models show what the
success reports, so a query issued after the answer sees it. Each driving adapter only translates:
the socket runner turns :class:`CommandRefused` into an error ack, the auth router into a status code.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast, get_args

from domain.envelope import CommandEnvelope, Outcome, utcnow
from domain.errors import ErrorCode

log = logging.getLogger("parley.gateway.commands")

ERROR_CODES: frozenset[str] = frozenset(get_args(ErrorCode))


class CommandSender(Protocol):
    """Delivers a command to the single writer of its aggregate and returns its outcome
    (``infra.kafka.command_bus.CommandBus``). Raises ``Unavailable`` when it cannot."""

    @property
    def instance_id(self) -> str: ...

    async def execute(self, envelope: CommandEnvelope, timeout: float) -> Outcome: ...  # noqa: ASYNC109


class VersionWaiter(Protocol):
    """Resolves when the read models have applied a stream version (``api.read_your_writes.ReadYourWrites``)."""

    async def wait(
        self, stream_id: str, version: int, timeout_s: float, fallback: Callable[[], Awaitable[bool]]
    ) -> bool: ...


class CommandRefused(Exception):
    """The worker decided against the command; ``code`` is one of the protocol's error codes."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


@dataclass(frozen=True)
class Command:
    """What a driving adapter knows of a command; the use case makes the envelope."""

    type: str
    aggregate_id: str
    actor_id: str | None
    correlation_id: str
    payload: dict[str, Any]
    command_id: str | None = None  # a fresh UUID when the client chose none
    expected_version: int | None = None


# Given the command's stream id and the version its outcome reports: True once the read models show it.
Visible = Callable[[str, int], Awaitable[bool]]


class SendCommand:
    def __init__(self, sender: CommandSender, waiter: VersionWaiter, timeout_s: float, visible_within_s: float) -> None:
        self._sender = sender
        self._waiter = waiter
        self._timeout_s = timeout_s
        self._visible_within_s = visible_within_s

    def envelope(self, command: Command) -> CommandEnvelope:
        return CommandEnvelope(
            command_id=command.command_id or str(uuid.uuid4()),
            type=command.type,
            aggregate_id=command.aggregate_id,
            actor_id=command.actor_id,
            correlation_id=command.correlation_id,
            expected_version=command.expected_version,
            issued_at=utcnow(),
            payload=command.payload,
            reply_to=self._sender.instance_id,
        )

    async def __call__(
        self, command: Command, visible: Visible | None = None, within_s: float | None = None
    ) -> dict[str, Any]:
        """The outcome's data; :class:`CommandRefused` when refused.

        ``visible``: how to tell, by one query, that the read models show the outcome; the wait is on the
        applied-versions feed and asks that query only when the feed stays silent for the bound. Without
        it the answer does not wait. An outcome without a version (a no-op) does not wait either.
        ``within_s`` overrides the bound of the wait.
        """
        envelope = self.envelope(command)
        outcome = await self._sender.execute(envelope, self._timeout_s)
        if not outcome.ok:
            code = outcome.error_code if outcome.error_code in ERROR_CODES else "internal"
            raise CommandRefused(cast(ErrorCode, code), outcome.error_message or str(code))
        data = dict(outcome.data)
        version = data.get("version")
        if visible is not None and type(version) is int:
            shown = await self._waiter.wait(
                envelope.aggregate_id,
                version,
                self._visible_within_s if within_s is None else within_s,
                lambda: visible(envelope.aggregate_id, version),
            )
            if not shown:  # a slow read model delays the answer by at most the bound; the command succeeded
                log.warning("read models had not reached %s v%d when answering", envelope.aggregate_id, version)
        return data
