"""Wire format of the topics: JSON values, the stream/aggregate id as key, metadata in headers."""

from __future__ import annotations

from domain.envelope import CommandEnvelope, EventEnvelope, Rejection

Headers = list[tuple[str, bytes]]


def encode_event(event: EventEnvelope) -> tuple[bytes, bytes, Headers]:
    headers: Headers = [
        ("event_id", event.event_id.encode()),
        ("type", event.type.encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("correlation_id", event.correlation_id.encode()),
    ]
    return event.stream_id.encode(), event.model_dump_json().encode(), headers


def decode_event(value: bytes) -> EventEnvelope:
    return EventEnvelope.model_validate_json(value)


def encode_command(command: CommandEnvelope) -> tuple[bytes, bytes, Headers]:
    headers: Headers = [
        ("command_id", command.command_id.encode()),
        ("type", command.type.encode()),
        ("correlation_id", command.correlation_id.encode()),
    ]
    return command.aggregate_id.encode(), command.model_dump_json().encode(), headers


def decode_command(value: bytes) -> CommandEnvelope:
    return CommandEnvelope.model_validate_json(value)


def encode_rejection(rejection: Rejection) -> tuple[bytes, bytes, Headers]:
    key = (rejection.aggregate_id or rejection.actor_id or rejection.command_id).encode()
    headers: Headers = [("correlation_id", rejection.correlation_id.encode()), ("type", b"CommandRejected")]
    return key, rejection.model_dump_json().encode(), headers


def decode_rejection(value: bytes) -> Rejection:
    return Rejection.model_validate_json(value)
