"""Command and event envelopes: what travels on the commands and events topics.

Event ids are deterministic from the command id, and times come from the command, so a
command decided twice (at-least-once redelivery) yields byte-identical events.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAMESPACE = uuid.UUID("6f1c7c58-3e0b-4d7a-9d55-2b1f0c9a4e11")


def derive_id(command_id: str, label: str) -> str:
    """A stable UUID derived from a command id (same command, same id)."""
    return str(uuid.uuid5(NAMESPACE, f"{command_id}:{label}"))


def event_id_for(command_key: str, index: int) -> str:
    """The id of the index-th event of a command (``command_key``: see ``CommandEnvelope.key``)."""
    return derive_id(command_key, f"event:{index}")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the one time format on the wire."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CommandEnvelope(BaseModel):
    """A command as published by a gateway to the commands topic (key: aggregate_id)."""

    model_config = ConfigDict(frozen=True)

    command_id: str
    type: str  # protocol event name, e.g. "message:send"
    aggregate_id: str  # stream id of the aggregate that decides it
    actor_id: str | None
    correlation_id: str
    expected_version: int | None = None
    issued_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)
    reply_to: str | None = None  # gateway instance awaiting the outcome

    @property
    def key(self) -> str:
        """What makes a command the same command: its aggregate, its actor and its command id.

        Ids derived from it (events, messages) cannot collide when a client reuses a command id
        on another conversation, or when another user sends the same command id.
        """
        return f"{self.aggregate_id}|{self.actor_id or ''}|{self.command_id}"


class EventEnvelope(BaseModel):
    """An event as stored in the events topic (key: stream_id). The system of record."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    type: str  # past tense, e.g. "MessageSent"
    schema_version: int = 1
    stream_id: str
    stream_version: int
    occurred_at: datetime
    actor_id: str | None
    correlation_id: str
    causation_id: str  # the command id that caused it
    payload: dict[str, Any] = Field(default_factory=dict)


class Rejection(BaseModel):
    """A refused command, kept in the rejections topic for the compliance trail."""

    model_config = ConfigDict(frozen=True)

    rejection_id: str
    command_id: str
    command_type: str
    aggregate_id: str | None
    actor_id: str | None
    correlation_id: str
    code: str
    message: str
    occurred_at: datetime
    stage: str  # "gateway" (validation, auth, rate limit) or "domain"


class Outcome(BaseModel):
    """The result of deciding a command, sent back to the awaiting gateway and remembered per command_id."""

    model_config = ConfigDict(frozen=True)

    command_id: str
    correlation_id: str
    ok: bool
    data: dict[str, Any] = Field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    reply_to: str | None = None
