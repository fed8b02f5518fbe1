"""Drive the real command handler with in-memory stores to produce realistic event logs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from commands.handler import Result, Stores, apply_result, handle
from domain.conversation import conversation_stream_id, direct_conversation_id
from domain.envelope import CommandEnvelope, EventEnvelope, derive_id
from domain.names import username_stream_id

# Keys the username streams' hashes in tests (production derives it from the master key).
INDEX_KEY = b"parley-tests-username-index-key!"

USERS = [str(uuid.UUID(int=i + 1)) for i in range(4)]


class DictKV:
    """In-memory fake of the handler's key-value port (unit tests only)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        return dict(value) if value is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = dict(value)


def new_stores() -> Stores:
    return Stores(aggregates=DictKV(), messages=DictKV(), outcomes=DictKV())


@dataclass
class Scenario:
    stores: Stores = field(default_factory=new_stores)
    log: list[EventEnvelope] = field(default_factory=list)
    clock: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    counter: int = 0

    def command(
        self,
        ctype: str,
        aggregate_id: str,
        actor: str | None,
        payload: dict[str, Any],
        command_id: str | None = None,
        expected_version: int | None = None,
    ) -> CommandEnvelope:
        self.counter += 1
        self.clock += timedelta(milliseconds=7)
        cid = command_id or str(uuid.UUID(int=10_000 + self.counter))
        return CommandEnvelope(
            command_id=cid,
            type=ctype,
            aggregate_id=aggregate_id,
            actor_id=actor,
            correlation_id=cid,
            expected_version=expected_version,
            issued_at=self.clock,
            payload=payload,
            reply_to="test",
        )

    def run(self, command: CommandEnvelope) -> Result:
        result = handle(command, self.stores)
        self.log.extend(result.events)  # "appended to the log"
        apply_result(command, result, self.stores)
        return result

    def register(self, user_id: str, username: str) -> Result:
        payload = {"user_id": user_id, "username": username, "password_hash": "h"}
        return self.run(self.command("user:register", username_stream_id(username, INDEX_KEY), None, payload))

    def create_group(self, actor: str, others: list[str], title: str = "team") -> str:
        cmd = self.command("conversation:create", "", actor, {})
        conv = derive_id(f"{actor}|{cmd.command_id}", "conversation")
        payload = {"kind": "group", "participant_ids": others, "title": title}
        result = self.run(cmd.model_copy(update={"aggregate_id": conversation_stream_id(conv), "payload": payload}))
        assert result.outcome.ok, result.outcome
        return conv

    def create_direct(self, actor: str, other: str) -> str:
        conv = direct_conversation_id(actor, other)
        payload = {"kind": "direct", "participant_ids": [other]}
        self.run(self.command("conversation:create", conversation_stream_id(conv), actor, payload))
        return conv

    def on(self, conv: str, ctype: str, actor: str, **payload: Any) -> Result:
        return self.run(self.command(ctype, conversation_stream_id(conv), actor, {"conversation_id": conv, **payload}))
