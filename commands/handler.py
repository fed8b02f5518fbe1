"""The application service: one command envelope through its aggregate's decider.

Runs inside the single writer of the aggregate (the worker that owns the command's
partition). Reads state through ports, asks the pure domain to decide, and returns what
must be appended and remembered. Writing happens in two steps so that events are durably
in the log before any state that depends on them is saved (``apply_result``):

1. the caller appends ``result.events`` (and ``result.rejection``) to the log and waits;
2. the caller calls ``apply_result`` to save the aggregate record, message index entries
   and the outcome.

The aggregate record holds the state and the outcomes of its most recent commands in ONE
value, so a crash between the steps can never leave state advanced without the outcome
that makes a redelivered command idempotent. Older outcomes live in a separate table for
long-term idempotency; one found ahead of the saved state is ignored (see ``remembered``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from domain import decider
from domain.catalog import MEDIA_EVENTS
from domain.envelope import CommandEnvelope, EventEnvelope, Outcome, Rejection, derive_id
from domain.errors import DomainError
from domain.media import MediaRef, evolve_media, media_ref_from_dict, media_ref_key, media_ref_to_dict

RECENT_OUTCOMES = 64


class KeyValue(Protocol):
    """A keyed store of JSON-able values, partitioned with the commands (a Faust table in production)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


@dataclass
class Stores:
    aggregates: KeyValue  # stream id -> {"state": ..., "recent": {command_id: outcome}}
    messages: KeyValue  # message id -> MessageRef; media_ref_key(media id) -> MediaRef
    outcomes: KeyValue  # "<stream id>|<command id>" -> outcome (long-term idempotency)


@dataclass
class Result:
    outcome: Outcome
    events: list[EventEnvelope] = field(default_factory=list)
    rejection: Rejection | None = None
    repeated: bool = False  # the command was already decided: nothing to append or save
    record: dict[str, Any] | None = None  # the aggregate record to save after appending
    message_refs: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def recent_key(command: CommandEnvelope) -> str:
    """The key of a command's outcome in its aggregate record's ``recent``."""
    return f"{command.actor_id or ''}|{command.command_id}"


def stored_outcome(outcome: Outcome) -> dict[str, Any]:
    """An outcome as the stores keep it: without the reply address of the attempt that decided it,
    and without its empty fields (an aggregate record holds ``RECENT_OUTCOMES`` of them; a stored
    outcome reads back equal, and those stored with their empty fields read as before)."""
    return outcome.model_dump(mode="json", exclude={"reply_to"}, exclude_none=True)


def remembered(command: CommandEnvelope, stores: Stores) -> Outcome | None:
    """The outcome of this very command (same aggregate, actor and command id), if decided before."""
    record = stores.aggregates.get(command.aggregate_id)
    if record is not None:
        recent = record.get("recent", {})
        if recent_key(command) in recent:
            return Outcome.model_validate(recent[recent_key(command)])
    old = stores.outcomes.get(command.key)
    if old is None:
        return None
    outcome = Outcome.model_validate(old)
    # The tables are separate changelogs: if the aggregate's save was lost in a crash while the
    # outcome's survived, the outcome is ahead of the state. Deciding again is then the way to
    # append the (identical, deterministic) events the state misses.
    state_version = int(record["state"].get("version", 0)) if record is not None else 0
    version = outcome.data.get("version")
    if isinstance(version, int) and version > state_version:
        return None
    return outcome


def handle(command: CommandEnvelope, stores: Stores) -> Result:
    """Decide one command. Pure apart from reading the stores."""
    previous = remembered(command, stores)
    if previous is not None:
        return Result(outcome=previous.model_copy(update={"reply_to": command.reply_to}), repeated=True)

    record = stores.aggregates.get(command.aggregate_id)
    try:
        state = (
            decider.state_from_dict(record["state"])
            if record is not None
            else decider.initial_state(command.aggregate_id)
        )
        message_id = decider.message_id_of(command)
        ref_doc = stores.messages.get(message_id) if message_id else None
        ref = decider.message_ref_from_dict(ref_doc) if ref_doc is not None else None
        media_refs: dict[str, MediaRef] = {}
        for media_id in decider.media_ids_of(command):
            media_doc = stores.messages.get(media_ref_key(media_id))
            if media_doc is not None:
                media_refs[media_id] = media_ref_from_dict(media_doc)
        decision = decider.decide(state, command, ref, media_refs)
    except DomainError as err:
        return _refused(command, record, err.code, err.message)
    except ValueError as err:  # an aggregate id of no known kind
        return _refused(command, record, "invalid", str(err))

    events = decider.envelopes_for(command, state.version, decision.events)
    refs: dict[str, dict[str, Any] | None] = {}
    for event in events:
        state = decider.evolve(state, event)
        target = event.payload.get("message_id")
        if isinstance(target, str):
            current = refs[target] if target in refs else stores.messages.get(target)
            cur_ref = decider.message_ref_from_dict(current) if current is not None else None
            new_ref = decider.evolve_message(cur_ref, event)
            refs[target] = decider.message_ref_to_dict(new_ref) if new_ref is not None else None
        named = event.payload.get("media_id") if event.type in MEDIA_EVENTS else None
        if isinstance(named, str):
            key = media_ref_key(named)
            current = refs[key] if key in refs else stores.messages.get(key)
            new_media = evolve_media(media_ref_from_dict(current) if current is not None else None, event)
            refs[key] = media_ref_to_dict(new_media) if new_media is not None else None

    outcome = Outcome(
        command_id=command.command_id,
        correlation_id=command.correlation_id,
        ok=True,
        data=decision.data,
        reply_to=command.reply_to,
    )
    new_record = {"state": decider.state_to_dict(state), "recent": _remember(record, command, outcome)}
    return Result(outcome=outcome, events=events, record=new_record, message_refs=refs)


def apply_result(command: CommandEnvelope, result: Result, stores: Stores) -> None:
    """Save what a decided command changed. Call only after its events are in the log.

    Order matters: message index, then the aggregate record (state + recent outcomes), then the
    long-term outcome; ``remembered`` refuses an outcome that is ahead of the saved state.
    """
    if result.repeated:
        return
    for message_id, ref in result.message_refs.items():
        if ref is not None:
            stores.messages.put(message_id, ref)
    if result.record is not None:
        stores.aggregates.put(command.aggregate_id, result.record)
    stores.outcomes.put(command.key, stored_outcome(result.outcome))


def refused(command: CommandEnvelope, stores: Stores, code: str, message: str) -> Result:
    """A refusal of ``command`` decided outside the domain (e.g. ``internal``), remembered like any other."""
    return _refused(command, stores.aggregates.get(command.aggregate_id), code, message)


def _remember(record: dict[str, Any] | None, command: CommandEnvelope, outcome: Outcome) -> dict[str, Any]:
    recent: dict[str, Any] = dict(record.get("recent", {})) if record else {}
    recent[recent_key(command)] = stored_outcome(outcome)
    while len(recent) > RECENT_OUTCOMES:
        recent.pop(next(iter(recent)))
    return recent


def _refused(command: CommandEnvelope, record: dict[str, Any] | None, code: str, message: str) -> Result:
    outcome = Outcome(
        command_id=command.command_id,
        correlation_id=command.correlation_id,
        ok=False,
        error_code=code,
        error_message=message,
        reply_to=command.reply_to,
    )
    rejection = Rejection(
        rejection_id=derive_id(command.key, "rejection"),
        command_id=command.command_id,
        command_type=command.type,
        aggregate_id=command.aggregate_id,
        actor_id=command.actor_id,
        correlation_id=command.correlation_id,
        code=code,
        message=message,
        occurred_at=command.issued_at,
        stage="domain",
    )
    # A refusal is remembered too (same command_id, same answer) but changes no state.
    new_record = None
    if record is not None:
        new_record = {"state": record["state"], "recent": _remember(record, command, outcome)}
    return Result(outcome=outcome, rejection=rejection, record=new_record)
