"""One entry point for the command handler: route a command, state or event to its aggregate by
stream id (`conversation:<uuid>`, `username:<name hash>`, `keys:<user_id>`, `account:<user_id>`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from domain import accounts, conversation, keys, users
from domain.accounts import AccountState
from domain.catalog import AggregateKind, Decision, NewEvent
from domain.conversation import ConversationState, MessageRef
from domain.envelope import CommandEnvelope, EventEnvelope, event_id_for
from domain.errors import invalid
from domain.keys import KeysState
from domain.media import MediaRef
from domain.names import USERNAME_STREAM_PREFIX
from domain.users import UsernameState

__all__ = [
    "COMMAND_PAYLOADS",
    "AggregateState",
    "Decision",
    "MessageRef",
    "NewEvent",
    "aggregate_kind",
    "command_aggregate_kind",
    "decide",
    "envelopes_for",
    "evolve",
    "evolve_message",
    "initial_state",
    "media_ids_of",
    "message_id_of",
    "message_ref_from_dict",
    "message_ref_to_dict",
    "state_from_dict",
    "state_to_dict",
]

AggregateState = ConversationState | UsernameState | KeysState | AccountState

COMMAND_PAYLOADS: dict[str, type[BaseModel]] = {
    **conversation.COMMAND_MODELS,
    **users.COMMAND_MODELS,
    **keys.COMMAND_MODELS,
    **accounts.COMMAND_MODELS,
}

_COMMAND_KINDS: dict[str, AggregateKind] = {
    **{name: "conversation" for name in conversation.COMMAND_MODELS},
    **{name: "username" for name in users.COMMAND_MODELS},
    **{name: "keys" for name in keys.COMMAND_MODELS},
    **{name: "account" for name in accounts.COMMAND_MODELS},
}


def aggregate_kind(stream_id: str) -> AggregateKind:
    """The aggregate a stream id belongs to; ValueError for any other prefix."""
    if stream_id.startswith(conversation.STREAM_PREFIX):
        return "conversation"
    if stream_id.startswith(USERNAME_STREAM_PREFIX):
        return "username"
    if stream_id.startswith(keys.STREAM_PREFIX):
        return "keys"
    if stream_id.startswith(accounts.STREAM_PREFIX):
        return "account"
    raise ValueError(f"unknown stream id {stream_id!r}")


def command_aggregate_kind(command_type: str) -> AggregateKind | None:
    """The aggregate kind deciding `command_type` (a protocol event name), None if no aggregate does."""
    return _COMMAND_KINDS.get(command_type)


def initial_state(stream_id: str) -> AggregateState:
    """The state of an aggregate with no events yet (version 0)."""
    kind = aggregate_kind(stream_id)
    if kind == "conversation":
        return conversation.initial_state(stream_id)
    if kind == "keys":
        return keys.initial_state(stream_id)
    if kind == "account":
        return accounts.initial_state(stream_id)
    return users.initial_state(stream_id)


def decide(
    state: AggregateState,
    command: CommandEnvelope,
    message: MessageRef | None,
    media_refs: Mapping[str, MediaRef] | None = None,
) -> Decision:
    """The events and ack data for `command`; raises DomainError when refused.

    `message` is the MessageRef of `message_id_of(command)` (None if absent or not needed),
    `media_refs` the MediaRefs found of `media_ids_of(command)`.
    ValueError if the handler routed the command to another stream's state.
    """
    if command.aggregate_id != state.stream_id:
        raise ValueError(f"command for {command.aggregate_id!r} decided against {state.stream_id!r}")
    if command_aggregate_kind(command.type) != state.aggregate:
        raise invalid(f"command {command.type[:64]!r} is not handled by a {state.aggregate} stream")
    if isinstance(state, ConversationState):
        return conversation.decide(state, command, message, media_refs)
    if isinstance(state, KeysState):
        return keys.decide(state, command)
    if isinstance(state, AccountState):
        return accounts.decide(state, command)
    return users.decide(state, command)


def evolve(state: AggregateState, event: EventEnvelope) -> AggregateState:
    """`state` after `event`, upcasting it first; redeliveries change nothing."""
    if isinstance(state, ConversationState):
        return conversation.evolve(state, event)
    if isinstance(state, KeysState):
        return keys.evolve(state, event)
    if isinstance(state, AccountState):
        return accounts.evolve(state, event)
    return users.evolve(state, event)


def evolve_message(ref: MessageRef | None, event: EventEnvelope) -> MessageRef | None:
    """The message index entry after `event` (MessageSent creates one); other events pass `ref` through."""
    return conversation.evolve_message(ref, event)


def media_ids_of(command: CommandEnvelope) -> list[str]:
    """The media a command names, to load their MediaRefs (index keys `media_ref_key(id)`) first."""
    return conversation.media_ids_of(command)


def message_id_of(command: CommandEnvelope) -> str | None:
    """The message a command targets (edit, delete, react), to load its MessageRef before deciding."""
    return conversation.message_id_of(command)


def envelopes_for(command: CommandEnvelope, state_version: int, events: Sequence[NewEvent]) -> list[EventEnvelope]:
    """The envelopes to append for a decision, numbered from `state_version` (what the handler does)."""
    return [
        EventEnvelope(
            event_id=event_id_for(command.key, index),
            type=event.type,
            schema_version=event.schema_version,
            stream_id=command.aggregate_id,
            stream_version=state_version + index + 1,
            occurred_at=command.issued_at,
            actor_id=command.actor_id,
            correlation_id=command.correlation_id,
            causation_id=command.command_id,
            payload=event.payload,
        )
        for index, event in enumerate(events)
    ]


def state_to_dict(state: AggregateState) -> dict[str, Any]:
    """JSON-able form of a state (its `aggregate` field says which)."""
    return state.model_dump(mode="json")


def state_from_dict(data: dict[str, Any]) -> AggregateState:
    if data.get("aggregate") == "username":
        return UsernameState.model_validate(data)
    if data.get("aggregate") == "keys":
        return KeysState.model_validate(data)
    if data.get("aggregate") == "account":
        return AccountState.model_validate(data)
    return ConversationState.model_validate(data)


def message_ref_to_dict(ref: MessageRef) -> dict[str, Any]:
    return ref.model_dump(mode="json")


def message_ref_from_dict(data: dict[str, Any]) -> MessageRef:
    return MessageRef.model_validate(data)
