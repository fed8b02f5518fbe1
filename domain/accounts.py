"""A user's account (stream `account:<user_id>`): today, its erasure.

Erasure is crypto-shredding (docs/THREAT-MODEL.md): the worker destroys the user's data key
before it appends `UserErased`, so every event that carries their personal data becomes
unreadable in place, in the log that is never rewritten. The event itself says when and by whom
(the user, or an operator) and is what the projections react to. Erasing twice changes nothing:
the second command is answered ok with no event.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from domain import catalog as ev
from domain.catalog import CommandPayload, Decision, new_event, parse_command
from domain.envelope import CommandEnvelope, EventEnvelope, iso
from domain.errors import forbidden, invalid
from domain.streams import StreamKind, unapplied

STREAM_PREFIX = "account:"
ACCOUNTS = StreamKind(STREAM_PREFIX, "account")
ERASE = "user:erase"

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class EraseUser(CommandPayload):
    user_id: Id


COMMAND_MODELS: dict[str, type[CommandPayload]] = {ERASE: EraseUser}


def account_stream_id(user_id: str) -> str:
    return ACCOUNTS.stream_id(user_id)


class AccountState(BaseModel):
    model_config = ConfigDict(frozen=True)

    aggregate: Literal["account"] = "account"
    user_id: str
    version: int = 0
    erased: bool = False

    @property
    def stream_id(self) -> str:
        return account_stream_id(self.user_id)


def initial_state(stream_id: str) -> AccountState:
    return AccountState(user_id=ACCOUNTS.key_of(stream_id))


def decide(state: AccountState, command: CommandEnvelope) -> Decision:
    """UserErased once; a later erase of the same user is ok with no event.

    The actor is the user themself, or None for an operator (the CLI); nobody else may erase."""
    if command.type not in COMMAND_MODELS:
        raise invalid(f"unknown command {command.type[:64]!r}")
    p = parse_command(EraseUser, command.payload)
    if p.user_id != state.user_id:
        raise invalid("user_id does not match the command's stream")
    if command.actor_id is not None and command.actor_id != state.user_id:
        raise forbidden("only the user or an operator may erase an account")
    if state.erased:
        return Decision([], {"user_id": state.user_id, "erased": True, "version": state.version})
    erased = ev.UserErased(
        user_id=state.user_id,
        erased_by="user" if command.actor_id is not None else "operator",
        erased_at=iso(command.issued_at),
    )
    return Decision([new_event(erased)], {"user_id": state.user_id, "erased": True, "version": state.version + 1})


def evolve(state: AccountState, event: EventEnvelope) -> AccountState:
    fresh = unapplied(state.stream_id, state.version, event)
    if fresh is None:
        return state
    moved = state.model_copy(update={"version": fresh.stream_version})
    if fresh.type == ev.UserErased.event_type:
        return moved.model_copy(update={"erased": True})
    return moved
