"""The conversation aggregate (stream `conversation:<uuid>`): participants, roles, title, and its
messages, which are events of the same stream so that `seq` has a total order.

The state stays bounded: it holds members, read markers and the last seq, never messages. What
edit, delete and react need to know about one message arrives as a `MessageRef`, kept by
`evolve_message` in a separate keyed store.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from domain import catalog as ev
from domain import media
from domain.catalog import (
    CommandPayload,
    ConversationKind,
    Decision,
    NewEvent,
    Role,
    new_event,
    parse_command,
)
from domain.emoji import is_emoji
from domain.envelope import NAMESPACE, CommandEnvelope, EventEnvelope, derive_id, iso
from domain.errors import DomainError, conflict, forbidden, invalid, not_found
from domain.streams import StreamKind, unapplied
from domain.upcasting import upcast

STREAM_PREFIX = "conversation:"
CONVERSATIONS = StreamKind(STREAM_PREFIX, "conversation")
MAX_PARTICIPANTS = 1000
MAX_TITLE = 200
MAX_BODY = 10_000
MAX_CIPHERTEXT = 64 * 1024  # bytes, decoded
MAX_EMOJI = 32
MAX_REACTION_KINDS = 100  # distinct emojis on one message: keeps a MessageRef bounded


# -- ids -------------------------------------------------------------------------------------------


def conversation_stream_id(conversation_id: str) -> str:
    return CONVERSATIONS.stream_id(conversation_id)


def conversation_id_of(stream_id: str) -> str:
    """The conversation id in a `conversation:<id>` stream id; ValueError otherwise."""
    return CONVERSATIONS.key_of(stream_id)


def conversation_in(stream_id: str) -> str | None:
    """The conversation id of a `conversation:<id>` stream id; None for a stream of another kind."""
    return CONVERSATIONS.key_in(stream_id)


def direct_conversation_id(user_a: str, user_b: str) -> str:
    """The one conversation id of a pair of users, whichever of them asks (uuid5 of the sorted pair)."""
    return str(uuid.uuid5(NAMESPACE, "direct:" + json.dumps(sorted((user_a, user_b)))))


# -- command payloads ------------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _ciphertext(value: str) -> str:
    """Standard base64 (padding required) of 1..MAX_CIPHERTEXT bytes; kept as sent."""
    if len(value) > 4 * ((MAX_CIPHERTEXT + 2) // 3):
        raise ValueError(f"must be at most {MAX_CIPHERTEXT} bytes once decoded")
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("must be standard base64") from None
    if not 1 <= len(decoded) <= MAX_CIPHERTEXT:
        raise ValueError(f"must be 1..{MAX_CIPHERTEXT} bytes once decoded")
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE)]
Body = Annotated[str, StringConstraints(min_length=1, max_length=MAX_BODY), AfterValidator(_not_blank)]


def _emoji_only(value: str) -> str:
    if not is_emoji(value):
        raise ValueError("must be one or more emoji, and nothing else")
    return value


Emoji = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EMOJI), AfterValidator(_emoji_only)]

Ciphertext = Annotated[str, AfterValidator(_ciphertext)]


class CreateConversation(CommandPayload):
    kind: ConversationKind
    participant_ids: list[Id] = Field(max_length=MAX_PARTICIPANTS)
    title: Title | None = None


class InConversation(CommandPayload):
    conversation_id: Id


class AddParticipants(InConversation):
    user_ids: list[Id] = Field(min_length=1, max_length=MAX_PARTICIPANTS)


class RemoveParticipant(InConversation):
    user_id: Id


class LeaveConversation(InConversation):
    pass


class RenameConversation(InConversation):
    title: Title


class WithContent(InConversation):
    """Exactly one of `body` (plain text) and `ciphertext` (an end-to-end encrypted message, base64)."""

    body: Body | None = None
    ciphertext: Ciphertext | None = None

    @model_validator(mode="after")
    def _one_content(self) -> WithContent:
        if (self.body is None) == (self.ciphertext is None):
            raise ValueError("exactly one of body and ciphertext is required")
        return self


class SendMessage(WithContent):
    media_ids: list[Id] | None = Field(default=None, max_length=media.MAX_ATTACHMENTS)


class EditMessage(WithContent):
    message_id: Id


class DeleteMessage(InConversation):
    message_id: Id


class ReactToMessage(InConversation):
    message_id: Id
    emoji: Emoji
    on: bool


class MarkRead(InConversation):
    seq: int = Field(ge=0)


def _filename(value: str) -> str:
    if any(ch in value for ch in "/\\") or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not hold a path separator or a control character")
    return value


Filename = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_filename)]
ContentType = Annotated[str, StringConstraints(min_length=3, max_length=127, pattern=r"^[\w.+-]+/[\w.+-]+$")]


class RequestUpload(InConversation):
    """`media_id`, `object_key` and `expires_in_s` are the gateway's (random id and key, its setting);
    the size and type limits are checked there too, against settings."""

    media_id: Id
    object_key: Annotated[str, StringConstraints(min_length=16, max_length=200)]
    filename: Filename
    content_type: ContentType
    size: int = Field(ge=1)
    expires_in_s: int = Field(ge=1, le=7 * 24 * 3600)


class CompleteUpload(InConversation):
    """`observed_*`: what the gateway found in the object store (None: no object)."""

    media_id: Id
    observed_size: int | None = None
    observed_content_type: str | None = None


class DeleteMedia(InConversation):
    media_id: Id


COMMAND_MODELS: dict[str, type[CommandPayload]] = {
    "conversation:create": CreateConversation,
    "conversation:add-participants": AddParticipants,
    "conversation:remove-participant": RemoveParticipant,
    "conversation:leave": LeaveConversation,
    "conversation:rename": RenameConversation,
    "message:send": SendMessage,
    "message:edit": EditMessage,
    "message:delete": DeleteMessage,
    "message:react": ReactToMessage,
    "message:read": MarkRead,
    "media:request-upload": RequestUpload,
    "media:upload-complete": CompleteUpload,
    "media:delete": DeleteMedia,
}

_TARGETS_MESSAGE = frozenset({"message:edit", "message:delete", "message:react"})


def create_target_stream(actor_id: str, command_id: str, payload: Mapping[str, Any]) -> str:
    """The stream a `conversation:create` goes to: the pair's direct conversation, or a new group id
    derived from the creator and the command id. DomainError("invalid") if the payload cannot say."""
    create = parse_command(CreateConversation, dict(payload))
    if create.kind == "group":
        return conversation_stream_id(derive_id(f"{actor_id}|{command_id}", "conversation"))
    return conversation_stream_id(direct_conversation_id(actor_id, _direct_peer(actor_id, create)))


def _direct_peer(actor_id: str, create: CreateConversation) -> str:
    others = _dedupe(user for user in create.participant_ids if user != actor_id)
    if len(others) != 1:
        raise invalid("a direct conversation has exactly one other participant")
    return others[0]


# -- state -----------------------------------------------------------------------------------------


class Member(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    joined: int  # join order: smaller is longer-standing


class ConversationState(BaseModel):
    """A fold of the conversation's events. `version` is the stream version (0: no events)."""

    model_config = ConfigDict(frozen=True)

    aggregate: Literal["conversation"] = "conversation"
    conversation_id: str
    version: int = 0
    created: bool = False
    kind: ConversationKind | None = None
    title: str | None = None
    members: dict[str, Member] = Field(default_factory=dict)  # current participants only
    next_join: int = 0
    last_seq: int = 0
    read_markers: dict[str, int] = Field(default_factory=dict)  # current participants only

    @property
    def stream_id(self) -> str:
        return conversation_stream_id(self.conversation_id)


class MessageRef(BaseModel):
    """What deciding about one message needs; kept per message_id by `evolve_message`."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    message_id: str
    sender_id: str
    seq: int
    deleted: bool = False
    reactions: dict[str, tuple[str, ...]] = Field(default_factory=dict)  # emoji -> sorted user ids
    e2e: bool = False  # end-to-end encrypted: edited with a ciphertext only


def initial_state(stream_id: str) -> ConversationState:
    return ConversationState(conversation_id=conversation_id_of(stream_id))


# -- decide ----------------------------------------------------------------------------------------


def message_id_of(command: CommandEnvelope) -> str | None:
    """The message an edit, delete or react targets, so its MessageRef can be loaded first."""
    if command.type not in _TARGETS_MESSAGE:
        return None
    message_id = command.payload.get("message_id")
    return message_id if isinstance(message_id, str) else None


def media_ids_of(command: CommandEnvelope) -> list[str]:
    """The media a command names (upload-complete, delete, a message's attachments), to load their refs first."""
    if command.type in ("media:request-upload", "media:upload-complete", "media:delete"):
        media_id = command.payload.get("media_id")
        return [media_id] if isinstance(media_id, str) else []
    if command.type == "message:send":
        ids = command.payload.get("media_ids")
        if isinstance(ids, list):
            return [i for i in ids[: media.MAX_ATTACHMENTS] if isinstance(i, str)]
    return []


def decide(
    state: ConversationState,
    command: CommandEnvelope,
    message: MessageRef | None,
    media_refs: Mapping[str, media.MediaRef] | None = None,
) -> Decision:
    """Events for `command` against `state` (and `message` for edit/delete/react, `media_refs` for
    the media it names); raises DomainError.

    Order of refusals: invalid payload, unauthorized, not_found (the conversation does not exist or
    the actor is not a current participant: no existence leak), conflict (expected_version), then
    the command's own rules.
    """
    model = COMMAND_MODELS.get(command.type)
    if model is None:
        raise invalid(f"unknown command {command.type[:64]!r}")
    payload = parse_command(model, command.payload)
    if command.actor_id is None:
        raise DomainError("unauthorized", "a conversation command needs an authenticated user")
    actor = command.actor_id
    if isinstance(payload, CreateConversation):
        return _create(state, command, payload, actor)
    assert isinstance(payload, InConversation)
    if payload.conversation_id != state.conversation_id:
        raise invalid("conversation_id does not match the command's stream")
    if not state.created or actor not in state.members:
        raise not_found()
    _check_version(state, command)
    match payload:
        case AddParticipants():
            return _add(state, payload, actor)
        case RemoveParticipant():
            return _remove(state, payload, actor)
        case LeaveConversation():
            return _decision(state, _departure(state, actor, None))
        case RenameConversation():
            return _rename(state, payload, actor)
        case SendMessage():
            return _send(state, command, payload, actor, media_refs or {})
        case RequestUpload():
            events, data = media.requested(
                state.conversation_id,
                actor,
                command.issued_at,
                payload.media_id,
                payload.object_key,
                payload.filename,
                payload.content_type,
                payload.size,
                payload.expires_in_s,
                media_refs or {},
            )
            return _decision(state, events, **data)
        case CompleteUpload():
            events, data = media.completed(
                state.conversation_id,
                actor,
                command.issued_at,
                payload.media_id,
                payload.observed_size,
                payload.observed_content_type,
                media_refs or {},
            )
            return _decision(state, events, **data)
        case DeleteMedia():
            return _decision(
                state,
                media.deleted(state.conversation_id, actor, command.issued_at, payload.media_id, media_refs or {}),
            )
        case EditMessage():
            return _edit(state, command, payload, actor, message)
        case DeleteMessage():
            return _delete(state, command, payload, actor, message)
        case ReactToMessage():
            return _react(state, payload, actor, message)
        case MarkRead():
            return _read(state, payload, actor)
    raise AssertionError(f"no rule for {type(payload).__name__}")  # pragma: no cover


def _check_version(state: ConversationState, command: CommandEnvelope) -> None:
    if command.expected_version is not None and command.expected_version != state.version:
        raise conflict(f"expected version {command.expected_version}, conversation is at {state.version}")


def _decision(state: ConversationState, events: list[NewEvent], **data: object) -> Decision:
    return Decision(events, {**data, "version": state.version + len(events)})


def _dedupe(users: Iterable[str]) -> list[str]:
    """Distinct ids in first-seen order."""
    return list(dict.fromkeys(users))


def _create(state: ConversationState, command: CommandEnvelope, p: CreateConversation, actor: str) -> Decision:
    cid = state.conversation_id
    if p.kind == "direct":
        peer = _direct_peer(actor, p)
        if cid != direct_conversation_id(actor, peer):
            raise invalid("the stream is not the direct conversation of these users")
        _check_version(state, command)
        if not state.created:
            created = ev.ConversationCreated(
                conversation_id=cid,
                kind="direct",
                title=None,
                created_by=actor,
                participant_ids=[actor, peer],
                admin_ids=[actor],
            )
            return _decision(state, [new_event(created)], conversation_id=cid)
        if actor in state.members:
            return _decision(state, [], conversation_id=cid)
        rejoined = ev.ParticipantsAdded(conversation_id=cid, user_ids=[actor], added_by=actor, role="member")
        return _decision(state, [new_event(rejoined)], conversation_id=cid)

    if p.title is None:
        raise invalid("title: a group conversation needs a title")
    participants = _dedupe([actor, *p.participant_ids])
    if len(participants) > MAX_PARTICIPANTS:
        raise invalid(f"participant_ids: a group holds at most {MAX_PARTICIPANTS} participants")
    if state.created:
        raise conflict("conversation already exists")
    _check_version(state, command)
    created = ev.ConversationCreated(
        conversation_id=cid,
        kind="group",
        title=p.title,
        created_by=actor,
        participant_ids=participants,
        admin_ids=[actor],
    )
    return _decision(state, [new_event(created)], conversation_id=cid)


def _require_group_admin(state: ConversationState, actor: str, what: str) -> None:
    if state.kind != "group":
        raise forbidden(f"a direct conversation cannot {what}")
    if state.members[actor].role != "admin":
        raise forbidden(f"only an admin can {what}")


def _add(state: ConversationState, p: AddParticipants, actor: str) -> Decision:
    _require_group_admin(state, actor, "add participants")
    new = [user for user in _dedupe(p.user_ids) if user not in state.members]
    if not new:
        return _decision(state, [])
    if len(state.members) + len(new) > MAX_PARTICIPANTS:
        raise conflict(f"a group holds at most {MAX_PARTICIPANTS} participants")
    added = ev.ParticipantsAdded(conversation_id=state.conversation_id, user_ids=new, added_by=actor, role="member")
    return _decision(state, [new_event(added)])


def _remove(state: ConversationState, p: RemoveParticipant, actor: str) -> Decision:
    if state.kind != "group":
        raise forbidden("a direct conversation cannot remove participants")
    if p.user_id == actor:
        return _decision(state, _departure(state, actor, None))
    _require_group_admin(state, actor, "remove participants")
    if p.user_id not in state.members:
        raise not_found("participant")
    return _decision(state, _departure(state, p.user_id, actor))


def _departure(state: ConversationState, user: str, removed_by: str | None) -> list[NewEvent]:
    """`user` leaves (removed_by None) or is removed; the longest-standing member becomes admin
    when a group would otherwise be left without one."""
    cid = state.conversation_id
    gone: ev.EventPayload = (
        ev.ParticipantLeft(conversation_id=cid, user_id=user)
        if removed_by is None
        else ev.ParticipantRemoved(conversation_id=cid, user_id=user, removed_by=removed_by)
    )
    events = [new_event(gone)]
    remaining = {other: member for other, member in state.members.items() if other != user}
    if state.kind == "group" and remaining and all(member.role != "admin" for member in remaining.values()):
        heir = min(remaining, key=lambda other: remaining[other].joined)
        reason: Literal["last_admin_left", "last_admin_removed"] = (
            "last_admin_left" if removed_by is None else "last_admin_removed"
        )
        events.append(new_event(ev.AdminPromoted(conversation_id=cid, user_id=heir, reason=reason)))
    return events


def _rename(state: ConversationState, p: RenameConversation, actor: str) -> Decision:
    _require_group_admin(state, actor, "be renamed")
    if p.title == state.title:
        return _decision(state, [])
    renamed = ev.ConversationRenamed(conversation_id=state.conversation_id, title=p.title, renamed_by=actor)
    return _decision(state, [new_event(renamed)])


def _send(
    state: ConversationState,
    command: CommandEnvelope,
    p: SendMessage,
    actor: str,
    media_refs: Mapping[str, media.MediaRef],
) -> Decision:
    attached = media.attachments(state.conversation_id, actor, p.media_ids, media_refs) if p.media_ids else None
    seq = state.last_seq + 1
    sent = ev.MessageSent(
        conversation_id=state.conversation_id,
        message_id=derive_id(command.key, "message"),
        seq=seq,
        sender_id=actor,
        body=p.body,
        format="plain" if p.ciphertext is None else "e2e",
        sent_at=iso(command.issued_at),
        ciphertext=p.ciphertext,
        attachments=attached,
    )
    return _decision(state, [new_event(sent)], message_id=sent.message_id, seq=seq, sent_at=sent.sent_at)


def _message(state: ConversationState, message_id: str, message: MessageRef | None) -> MessageRef:
    if message is None or message.message_id != message_id or message.conversation_id != state.conversation_id:
        raise not_found("message")
    return message


def _edit(
    state: ConversationState, command: CommandEnvelope, p: EditMessage, actor: str, message: MessageRef | None
) -> Decision:
    ref = _message(state, p.message_id, message)
    if ref.sender_id != actor:
        raise forbidden("only the sender can edit a message")
    if ref.deleted:
        raise conflict("message was deleted")
    if ref.e2e != (p.ciphertext is not None):
        raise invalid(
            "an end-to-end encrypted message is edited with a ciphertext"
            if ref.e2e
            else "a plain message is edited with a body"
        )
    edited = ev.MessageEdited(
        conversation_id=state.conversation_id,
        message_id=ref.message_id,
        seq=ref.seq,
        sender_id=ref.sender_id,
        body=p.body,
        edited_at=iso(command.issued_at),
        ciphertext=p.ciphertext,
    )
    return _decision(state, [new_event(edited)])


def _delete(
    state: ConversationState,
    command: CommandEnvelope,
    p: DeleteMessage,
    actor: str,
    message: MessageRef | None,
) -> Decision:
    ref = _message(state, p.message_id, message)
    if ref.sender_id != actor:
        raise forbidden("only the sender can delete a message")
    if ref.deleted:
        return _decision(state, [])
    deleted = ev.MessageDeleted(
        conversation_id=state.conversation_id,
        message_id=ref.message_id,
        seq=ref.seq,
        sender_id=ref.sender_id,
        deleted_at=iso(command.issued_at),
    )
    return _decision(state, [new_event(deleted)])


def _react(state: ConversationState, p: ReactToMessage, actor: str, message: MessageRef | None) -> Decision:
    ref = _message(state, p.message_id, message)
    if ref.deleted:
        raise conflict("message was deleted")
    users = ref.reactions.get(p.emoji, ())
    if (actor in users) == p.on:
        return _decision(state, [])
    if p.on and p.emoji not in ref.reactions and len(ref.reactions) >= MAX_REACTION_KINDS:
        raise conflict(f"a message holds at most {MAX_REACTION_KINDS} different reactions")
    changed = ev.ReactionChanged(
        conversation_id=state.conversation_id,
        message_id=ref.message_id,
        seq=ref.seq,
        user_id=actor,
        emoji=p.emoji,
        on=p.on,
    )
    return _decision(state, [new_event(changed)])


def _read(state: ConversationState, p: MarkRead, actor: str) -> Decision:
    seq = min(p.seq, state.last_seq)  # a marker beyond the last message is clamped, not refused
    if seq <= state.read_markers.get(actor, 0):
        return _decision(state, [])
    moved = ev.ReadMarkerMoved(conversation_id=state.conversation_id, user_id=actor, seq=seq)
    return _decision(state, [new_event(moved)])


# -- evolve ----------------------------------------------------------------------------------------


def evolve(state: ConversationState, event: EventEnvelope) -> ConversationState:
    """`state` after `event` (upcast first). An event at or below `state.version` is a redelivery
    and changes nothing; an event type this version does not know only moves the version."""
    fresh = unapplied(state.stream_id, state.version, event)
    if fresh is None:
        return state
    event = fresh
    moved = state.model_copy(update={"version": event.stream_version})
    if event.type not in ev.CATALOG:
        return moved
    match ev.parse_payload(event.type, event.payload):
        case ev.ConversationCreated() as p:
            members = {
                user: Member(role="admin" if user in p.admin_ids else "member", joined=join)
                for join, user in enumerate(p.participant_ids)
            }
            return moved.model_copy(
                update={
                    "created": True,
                    "kind": p.kind,
                    "title": p.title,
                    "members": members,
                    "next_join": len(members),
                    "read_markers": {},
                }
            )
        case ev.ParticipantsAdded() as p:
            members = dict(state.members)
            join = state.next_join
            for user in p.user_ids:
                if user not in members:
                    members[user] = Member(role=p.role, joined=join)
                    join += 1
            return moved.model_copy(update={"members": members, "next_join": join})
        case ev.ParticipantRemoved(user_id=user) | ev.ParticipantLeft(user_id=user):
            members = {other: m for other, m in state.members.items() if other != user}
            markers = {other: seq for other, seq in state.read_markers.items() if other != user}
            return moved.model_copy(update={"members": members, "read_markers": markers})
        case ev.AdminPromoted(user_id=user):
            if user not in state.members:
                return moved
            members = {**state.members, user: state.members[user].model_copy(update={"role": "admin"})}
            return moved.model_copy(update={"members": members})
        case ev.ConversationRenamed(title=title):
            return moved.model_copy(update={"title": title})
        case ev.MessageSent(seq=seq):
            return moved.model_copy(update={"last_seq": max(seq, state.last_seq)})
        case ev.ReadMarkerMoved(user_id=user, seq=seq):
            if user not in state.members or seq <= state.read_markers.get(user, 0):
                return moved
            return moved.model_copy(update={"read_markers": {**state.read_markers, user: seq}})
    return moved


def evolve_message(ref: MessageRef | None, event: EventEnvelope) -> MessageRef | None:
    """The message index after `event`: MessageSent creates a ref, MessageDeleted and
    ReactionChanged update the ref they name; anything else passes `ref` through."""
    if event.type not in ev.MESSAGE_EVENTS:
        return ref
    event = upcast(event)
    payload = ev.parse_payload(event.type, event.payload)
    if isinstance(payload, ev.MessageSent):
        if ref is not None and ref.message_id == payload.message_id:
            return ref  # redelivered: keep what happened to the message since
        return MessageRef(
            conversation_id=payload.conversation_id,
            message_id=payload.message_id,
            sender_id=payload.sender_id,
            seq=payload.seq,
            e2e=payload.format == "e2e",
        )
    if ref is None:
        return None
    match payload:
        case ev.MessageDeleted(message_id=message_id) if message_id == ref.message_id:
            return ref.model_copy(update={"deleted": True})
        case ev.ReactionChanged(message_id=message_id, emoji=emoji, user_id=user, on=on) if (
            message_id == ref.message_id
        ):
            users = set(ref.reactions.get(emoji, ())) - {user}
            if on:
                users.add(user)
            reactions = {key: value for key, value in ref.reactions.items() if key != emoji}
            if users:
                reactions[emoji] = tuple(sorted(users))
            return ref.model_copy(update={"reactions": reactions})
    return ref
