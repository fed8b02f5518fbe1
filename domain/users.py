"""Username reservation = registration (stream `username:<name hash>`): one stream per name makes
the name unique, since each stream has a single writer.

The stream id holds a keyed hash of the name (domain/names.py), which the gateway computes; the
state holds no name either (it is kept in a changelog topic, which erasure cannot rewrite), only
whether the name is taken and by whom."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints

from domain import catalog as ev
from domain.catalog import CommandPayload, Decision, new_event, parse_command
from domain.envelope import CommandEnvelope, EventEnvelope
from domain.errors import conflict, invalid
from domain.names import USERNAME_STREAM_PREFIX, normalise_username
from domain.streams import unapplied

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
RawUsername = Annotated[str, StringConstraints(min_length=1, max_length=256)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
PasswordHash = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class RegisterUser(CommandPayload):
    """`password_hash` is hashed by the gateway: no password ever reaches the log."""

    user_id: Id
    username: RawUsername
    display_name: DisplayName | None = None
    password_hash: PasswordHash


COMMAND_MODELS: dict[str, type[CommandPayload]] = {"user:register": RegisterUser}


class UsernameState(BaseModel):
    """A reserved (registered) username, or a free one while `version` is 0."""

    model_config = ConfigDict(frozen=True)

    aggregate: Literal["username"] = "username"
    name_key: str = Field(validation_alias=AliasChoices("name_key", "normalised"))  # the stream id's key
    version: int = 0
    user_id: str | None = None

    @property
    def stream_id(self) -> str:
        return USERNAME_STREAM_PREFIX + self.name_key

    @property
    def registered(self) -> bool:
        return self.user_id is not None


def initial_state(stream_id: str) -> UsernameState:
    if not stream_id.startswith(USERNAME_STREAM_PREFIX) or len(stream_id) == len(USERNAME_STREAM_PREFIX):
        raise ValueError(f"not a username stream: {stream_id!r}")
    return UsernameState(name_key=stream_id[len(USERNAME_STREAM_PREFIX) :])


def decide(state: UsernameState, command: CommandEnvelope) -> Decision:
    """UserRegistered, or DomainError: invalid payload or username, conflict when taken."""
    if command.type not in COMMAND_MODELS:
        raise invalid(f"unknown command {command.type[:64]!r}")
    p = parse_command(RegisterUser, command.payload)
    # The gateway routes a name to its stream (a keyed hash the domain cannot recompute).
    normalised = normalise_username(p.username)
    if state.version > 0:
        raise conflict("username taken")
    if command.expected_version is not None and command.expected_version != state.version:
        raise conflict(f"expected version {command.expected_version}, username is at {state.version}")
    username = p.username.strip()
    registered = ev.UserRegistered(
        user_id=p.user_id,
        username=username,
        normalised=normalised,
        display_name=p.display_name or username,
        password_hash=p.password_hash,
    )
    return Decision([new_event(registered)], {"user_id": p.user_id, "version": state.version + 1})


def evolve(state: UsernameState, event: EventEnvelope) -> UsernameState:
    """`state` after `event` (upcast first); redeliveries (stream_version <= version) change nothing."""
    fresh = unapplied(state.stream_id, state.version, event)
    if fresh is None:
        return state
    event = fresh
    moved = state.model_copy(update={"version": event.stream_version})
    if event.type != ev.UserRegistered.event_type:
        return moved
    return moved.model_copy(update={"user_id": str(event.payload["user_id"])})
