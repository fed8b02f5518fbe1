"""Upcasters: bring a stored event's payload up to the catalogue's current schema version.

Each upcaster is a small pure function keyed by (event type, from_version) that returns the
payload at from_version + 1; `upcast` chains them. The log is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.catalog import CATALOG
from domain.envelope import EventEnvelope

Upcaster = Callable[[EventEnvelope], dict[str, Any]]


def _message_sent_v1_to_v2(event: EventEnvelope) -> dict[str, Any]:
    """v1 `{message_id, seq, sender_id, text, sent_at}` -> v2: `text` renamed `body`, `format` and
    `conversation_id` (from the stream id) added."""
    payload = dict(event.payload)
    if "text" in payload:  # tolerate a v2 payload mislabelled as v1
        payload["body"] = payload.pop("text")
    payload.setdefault("format", "plain")
    payload.setdefault("conversation_id", event.stream_id.removeprefix("conversation:"))
    return payload


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("MessageSent", 1): _message_sent_v1_to_v2,
}


def upcast(event: EventEnvelope) -> EventEnvelope:
    """`event` at its type's current schema version. Unknown types pass through unchanged;
    a version newer than the catalogue's, or a missing upcaster, is a ValueError."""
    spec = CATALOG.get(event.type)
    if spec is None or event.schema_version == spec.version:
        return event
    if event.schema_version > spec.version or event.schema_version < 1:
        raise ValueError(f"{event.type} schema version {event.schema_version} is unknown here")
    while event.schema_version < spec.version:
        step = UPCASTERS.get((event.type, event.schema_version))
        if step is None:
            raise ValueError(f"no upcaster for {event.type} version {event.schema_version}")
        event = event.model_copy(update={"payload": step(event), "schema_version": event.schema_version + 1})
    return event
