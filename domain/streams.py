"""Stream ids (`<kind>:<key>`, one kind per aggregate) and the guard every `evolve` starts with."""

from __future__ import annotations

from dataclasses import dataclass

from domain.envelope import EventEnvelope
from domain.upcasting import upcast


@dataclass(frozen=True)
class StreamKind:
    """One aggregate's stream ids: `prefix` followed by a non-empty key."""

    prefix: str
    name: str

    def stream_id(self, key: str) -> str:
        return self.prefix + key

    def key_in(self, stream_id: str) -> str | None:
        """The key of a stream id of this kind; None for a stream of another kind."""
        if not stream_id.startswith(self.prefix) or len(stream_id) == len(self.prefix):
            return None
        return stream_id[len(self.prefix) :]

    def key_of(self, stream_id: str) -> str:
        """The key of a stream id of this kind; ValueError otherwise."""
        key = self.key_in(stream_id)
        if key is None:
            raise ValueError(f"not a {self.name} stream: {stream_id!r}")
        return key


def unapplied(stream_id: str, version: int, event: EventEnvelope) -> EventEnvelope | None:
    """`event` upcast to today's schema if it moves a state of `stream_id` at `version`, None if it
    is a redelivery (stream_version <= version). ValueError for another stream's event."""
    if event.stream_id != stream_id:
        raise ValueError(f"event of {event.stream_id!r} folded into {stream_id!r}")
    if event.stream_version <= version:
        return None
    return upcast(event)
