"""An in-memory stand-in for the command handler: one stream's log, state, message index and
command log (results remembered per command_id), driving the pure decider exactly as
commands/handler.py does."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import decider
from domain.conversation import MessageRef
from domain.envelope import CommandEnvelope, EventEnvelope
from domain.errors import DomainError
from domain.media import MediaRef, evolve_media

BASE_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_clock = itertools.count()


def command(
    type_: str,
    actor_id: str | None,
    aggregate_id: str,
    payload: dict[str, Any],
    *,
    command_id: str | None = None,
    expected_version: int | None = None,
) -> CommandEnvelope:
    """A command as a gateway would publish it (fresh ids, a strictly later time each call)."""
    command_id = command_id or str(uuid.uuid4())
    return CommandEnvelope(
        command_id=command_id,
        type=type_,
        aggregate_id=aggregate_id,
        actor_id=actor_id,
        correlation_id=f"corr-{command_id}",
        expected_version=expected_version,
        issued_at=BASE_TIME + timedelta(seconds=next(_clock)),
        payload=payload,
    )


@dataclass(frozen=True)
class Result:
    ok: bool
    data: dict[str, Any]
    code: str | None = None
    message: str | None = None
    events: tuple[EventEnvelope, ...] = ()


@dataclass
class Stream:
    stream_id: str
    state: decider.AggregateState = field(init=False)
    log: list[EventEnvelope] = field(default_factory=list)
    refs: dict[str, MessageRef] = field(default_factory=dict)
    media: dict[str, MediaRef] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)  # the command log

    def __post_init__(self) -> None:
        self.state = decider.initial_state(self.stream_id)

    def run(self, cmd: CommandEnvelope) -> Result:
        """Decide and append, or return the remembered result of a repeated command_id."""
        remembered = self.results.get(cmd.command_id)
        if remembered is not None:
            return remembered
        message_id = decider.message_id_of(cmd)
        ref = self.refs.get(message_id) if message_id else None
        before, length = self.state, len(self.log)
        try:
            media_refs = {i: self.media[i] for i in decider.media_ids_of(cmd) if i in self.media}
            decision = decider.decide(self.state, cmd, ref, media_refs)
        except DomainError as exc:
            result = Result(False, {}, exc.code, exc.message)
            assert self.state == before and len(self.log) == length
        else:
            envelopes = decider.envelopes_for(cmd, self.state.version, decision.events)
            self.append(envelopes)
            result = Result(True, decision.data, events=tuple(envelopes))
        self.results[cmd.command_id] = result
        return result

    def append(self, envelopes: list[EventEnvelope]) -> None:
        for envelope in envelopes:
            self.state = decider.evolve(self.state, envelope)
            message_id = envelope.payload.get("message_id")
            ref = decider.evolve_message(self.refs.get(message_id) if message_id else None, envelope)
            if ref is not None:
                self.refs[ref.message_id] = ref
            media_id = envelope.payload.get("media_id")
            media = evolve_media(self.media.get(media_id) if isinstance(media_id, str) else None, envelope)
            if media is not None:
                self.media[media.media_id] = media
            self.log.append(envelope)


def fold(stream_id: str, events: list[EventEnvelope]) -> decider.AggregateState:
    state = decider.initial_state(stream_id)
    for event in events:
        state = decider.evolve(state, event)
    return state


def fold_messages(events: list[EventEnvelope]) -> dict[str, MessageRef]:
    refs: dict[str, MessageRef] = {}
    for event in events:
        message_id = event.payload.get("message_id")
        ref = decider.evolve_message(refs.get(message_id) if message_id else None, event)
        if ref is not None:
            refs[ref.message_id] = ref
    return refs
