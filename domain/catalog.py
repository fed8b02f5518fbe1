"""The event catalogue: every event type, its current schema version and its payload model.

Also what deciders return (`NewEvent`, `Decision`) and the base of command payload models.

Payload models describe what is stored in `EventEnvelope.payload` at the current schema
version; older versions are brought up to date by `domain.upcasting` before anyone reads them.
Times are ISO-8601 strings (`envelope.iso`), ids are strings, nothing is derived later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.errors import invalid

AggregateKind = Literal["conversation", "username", "keys", "account"]
ConversationKind = Literal["direct", "group"]
Role = Literal["admin", "member"]


class EventPayload(BaseModel):
    """Base of every event payload model. `event_type` names the event it describes."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    event_type: ClassVar[str]


def _absent(value: object) -> bool:
    return value is None


class PayloadPart(BaseModel):
    """A value nested in an event payload (same strictness as the payloads)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# -- conversation stream ---------------------------------------------------------------------------


class ConversationCreated(EventPayload):
    event_type: ClassVar[str] = "ConversationCreated"

    conversation_id: str
    kind: ConversationKind
    title: str | None
    created_by: str
    participant_ids: list[str]  # in join order, the creator first
    admin_ids: list[str]


class ParticipantsAdded(EventPayload):
    """New participants, or a direct conversation's participant re-joining it."""

    event_type: ClassVar[str] = "ParticipantsAdded"

    conversation_id: str
    user_ids: list[str]  # in join order
    added_by: str
    role: Role


class ParticipantRemoved(EventPayload):
    event_type: ClassVar[str] = "ParticipantRemoved"

    conversation_id: str
    user_id: str
    removed_by: str


class ParticipantLeft(EventPayload):
    event_type: ClassVar[str] = "ParticipantLeft"

    conversation_id: str
    user_id: str


class AdminPromoted(EventPayload):
    """The longest-standing member, promoted because no admin remained."""

    event_type: ClassVar[str] = "AdminPromoted"

    conversation_id: str
    user_id: str
    reason: Literal["last_admin_left", "last_admin_removed"]


class ConversationRenamed(EventPayload):
    event_type: ClassVar[str] = "ConversationRenamed"

    conversation_id: str
    title: str
    renamed_by: str


class MessageSentV1(EventPayload):
    """MessageSent as stored at schema version 1 (read only, upcast to `MessageSent`)."""

    event_type: ClassVar[str] = "MessageSent"

    message_id: str
    seq: int
    sender_id: str
    text: str
    sent_at: str


class Attachment(PayloadPart):
    """A ready media item a message carries, as it was when the message was sent."""

    media_id: str
    filename: str
    content_type: str
    size: int


class MessageSent(EventPayload):
    """Schema version 2: `text` became `body`, `format` and `conversation_id` were added.

    An end-to-end encrypted message has `format: "e2e"`, `body: None` and its `ciphertext` (base64,
    stored and delivered untouched, never indexed); a plain one has `format: "plain"`, its `body` and
    no `ciphertext`. Both fields default so that every stored v2 event stays valid (no bump).
    """

    event_type: ClassVar[str] = "MessageSent"

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    body: str | None
    format: Literal["plain", "e2e"]
    sent_at: str
    ciphertext: str | None = Field(default=None, exclude_if=_absent)  # absent from plain payloads
    attachments: list[Attachment] | None = Field(default=None, exclude_if=_absent)  # absent: none


class MessageEdited(EventPayload):
    event_type: ClassVar[str] = "MessageEdited"

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    body: str | None  # None for an end-to-end encrypted message, edited with a new `ciphertext`
    edited_at: str
    ciphertext: str | None = Field(default=None, exclude_if=_absent)  # absent from plain payloads


class MessageDeleted(EventPayload):
    event_type: ClassVar[str] = "MessageDeleted"

    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    deleted_at: str


class ReactionChanged(EventPayload):
    """`user_id` added (`on`) or removed its `emoji` reaction."""

    event_type: ClassVar[str] = "ReactionChanged"

    conversation_id: str
    message_id: str
    seq: int
    user_id: str
    emoji: str
    on: bool


class ReadMarkerMoved(EventPayload):
    """`user_id` has read up to and including `seq`."""

    event_type: ClassVar[str] = "ReadMarkerMoved"

    conversation_id: str
    user_id: str
    seq: int


# -- username stream -------------------------------------------------------------------------------


class MediaUploadRequested(EventPayload):
    """A participant announced an upload: the object key is random, chosen by the gateway."""

    event_type: ClassVar[str] = "MediaUploadRequested"

    conversation_id: str
    media_id: str
    uploader_id: str
    filename: str
    content_type: str
    size: int
    object_key: str
    requested_at: str
    expires_at: str  # completed after this: refused; never completed: its object is removed


class MediaUploaded(EventPayload):
    """The object was found in the store with the declared size and type: the media is ready."""

    event_type: ClassVar[str] = "MediaUploaded"

    conversation_id: str
    media_id: str
    uploader_id: str
    size: int
    content_type: str
    uploaded_at: str


class MediaDeleted(EventPayload):
    event_type: ClassVar[str] = "MediaDeleted"

    conversation_id: str
    media_id: str
    deleted_by: str
    deleted_at: str


class UserRegistered(EventPayload):
    event_type: ClassVar[str] = "UserRegistered"

    user_id: str
    username: str  # as typed (surrounding whitespace removed)
    normalised: str  # the reserved name (the stream id holds a keyed hash of it, never the name)
    display_name: str
    password_hash: str


# -- account stream --------------------------------------------------------------------------------


class UserErased(EventPayload):
    """The user's data key was destroyed: every personal field sealed under it reads "[erased]"."""

    event_type: ClassVar[str] = "UserErased"

    user_id: str
    erased_by: Literal["user", "operator"]
    erased_at: str


# -- keys stream (the end-to-end encryption key directory) -----------------------------------------


class PrekeyPayload(PayloadPart):
    """A one-time X25519 prekey (public half, base64)."""

    key_id: int
    public_key: str


class SignedPrekeyPayload(PayloadPart):
    """The signed X25519 prekey and its identity key's Ed25519 signature (base64)."""

    key_id: int
    public_key: str
    signature: str


class PrekeyClaim(PayloadPart):
    device_id: str
    key_id: int


class DeviceKeysPublished(EventPayload):
    """A device's keys: a new device, a new identity (`identity_changed`: its available one-time
    prekeys are replaced), or the same identity with a new signed prekey (they are added to)."""

    event_type: ClassVar[str] = "DeviceKeysPublished"

    user_id: str
    device_id: str
    identity_key: str  # Ed25519, the key that signs `signed_prekey`
    identity_dh_key: str | None  # X25519 identity key for X3DH, when the client publishes one
    signed_prekey: SignedPrekeyPayload
    one_time_prekeys: list[PrekeyPayload]  # in key id order
    identity_changed: bool
    new_device: bool
    published_at: str


class OneTimePrekeysAdded(EventPayload):
    event_type: ClassVar[str] = "OneTimePrekeysAdded"

    user_id: str
    device_id: str
    one_time_prekeys: list[PrekeyPayload]  # in key id order


class PrekeysClaimed(EventPayload):
    """`claimed_by` fetched a bundle; each claimed one-time prekey is never handed out again."""

    event_type: ClassVar[str] = "PrekeysClaimed"

    user_id: str
    claimed_by: str
    claims: list[PrekeyClaim]


KEYS_EVENTS = frozenset({"DeviceKeysPublished", "OneTimePrekeysAdded", "PrekeysClaimed"})


# -- registry --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventSpec:
    event_type: str
    version: int  # the current schema version, written by deciders
    model: type[EventPayload]
    aggregate: AggregateKind


def _spec(model: type[EventPayload], aggregate: AggregateKind, version: int = 1) -> EventSpec:
    return EventSpec(model.event_type, version, model, aggregate)


CATALOG: dict[str, EventSpec] = {
    spec.event_type: spec
    for spec in (
        _spec(ConversationCreated, "conversation"),
        _spec(ParticipantsAdded, "conversation"),
        _spec(ParticipantRemoved, "conversation"),
        _spec(ParticipantLeft, "conversation"),
        _spec(AdminPromoted, "conversation"),
        _spec(ConversationRenamed, "conversation"),
        _spec(MessageSent, "conversation", version=2),
        _spec(MessageEdited, "conversation"),
        _spec(MessageDeleted, "conversation"),
        _spec(ReactionChanged, "conversation"),
        _spec(ReadMarkerMoved, "conversation"),
        _spec(MediaUploadRequested, "conversation"),
        _spec(MediaUploaded, "conversation"),
        _spec(MediaDeleted, "conversation"),
        _spec(UserRegistered, "username"),
        _spec(UserErased, "account"),
        _spec(DeviceKeysPublished, "keys"),
        _spec(OneTimePrekeysAdded, "keys"),
        _spec(PrekeysClaimed, "keys"),
    )
}

# Payload models of superseded schema versions, kept to document (and test) what the log holds.
HISTORIC: dict[tuple[str, int], type[EventPayload]] = {("MessageSent", 1): MessageSentV1}

MESSAGE_EVENTS = frozenset({"MessageSent", "MessageEdited", "MessageDeleted", "ReactionChanged"})
MEDIA_EVENTS = frozenset({"MediaUploadRequested", "MediaUploaded", "MediaDeleted"})


def current_version(event_type: str) -> int:
    """The schema version deciders write for `event_type`; ValueError if unknown."""
    try:
        return CATALOG[event_type].version
    except KeyError:
        raise ValueError(f"unknown event type {event_type!r}") from None


def payload_model(event_type: str, version: int | None = None) -> type[EventPayload]:
    """The payload model of `event_type` at `version` (default: current); ValueError if unknown."""
    current = current_version(event_type)
    if version is None or version == current:
        return CATALOG[event_type].model
    try:
        return HISTORIC[(event_type, version)]
    except KeyError:
        raise ValueError(f"no payload model for {event_type!r} version {version}") from None


def parse_payload(event_type: str, payload: dict[str, Any], version: int | None = None) -> EventPayload:
    """Validate a stored payload against its model (pydantic ValidationError if malformed)."""
    return payload_model(event_type, version).model_validate(payload)


# -- what deciders return --------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    """An event a decider emits; the command handler wraps it in an EventEnvelope.

    `schema_version` defaults to the catalogue's current version of `type`: copy it into the
    envelope (`decider.envelopes_for` does).
    """

    type: str
    payload: dict[str, Any]
    schema_version: int = field(default=0)

    def __post_init__(self) -> None:
        if self.schema_version == 0:
            object.__setattr__(self, "schema_version", current_version(self.type))


@dataclass(frozen=True)
class Decision:
    """Events to append (possibly none) and the ack data for the client.

    `data["version"]`, when present, is the stream version after the events.
    """

    events: list[NewEvent]
    data: dict[str, Any]


def new_event(payload: EventPayload) -> NewEvent:
    """A NewEvent at the current schema version from a payload model."""
    if type(payload) is not payload_model(payload.event_type):
        raise ValueError(f"{type(payload).__name__} is not the current payload model of {payload.event_type}")
    return NewEvent(payload.event_type, payload.model_dump(mode="json"), current_version(payload.event_type))


# -- command payloads ------------------------------------------------------------------------------


class CommandPayload(BaseModel):
    """Base of command payload models: strict types, unknown fields ignored (clients may send
    `command_id`, `expected_version`... inside the payload)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


P = TypeVar("P", bound=CommandPayload)


def parse_command(model: type[P], payload: dict[str, Any]) -> P:
    """`payload` validated by `model`; DomainError("invalid") with a short message otherwise."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise invalid(f"{where}: {first['msg']}"[:200]) from None
