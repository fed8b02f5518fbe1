"""Realistic event logs for the ops tests: users, conversations and their messages.

Payloads are built through the domain's payload models (so they have the shapes the
projections read), envelopes carry deterministic ids and times from a seed.
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.catalog import (
    Attachment,
    ConversationCreated,
    DeviceKeysPublished,
    EventPayload,
    MediaDeleted,
    MediaUploaded,
    MediaUploadRequested,
    MessageDeleted,
    MessageEdited,
    MessageSent,
    MessageSentV1,
    OneTimePrekeysAdded,
    PrekeyClaim,
    PrekeyPayload,
    PrekeysClaimed,
    ReactionChanged,
    SignedPrekeyPayload,
    UserRegistered,
)
from domain.envelope import EventEnvelope, Rejection, event_id_for, iso

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class LogBuilder:
    """Appends events in causal order; each stream's versions count up from 1."""

    seed: int = 1
    start: datetime = T0
    step: timedelta = timedelta(milliseconds=250)
    events: list[EventEnvelope] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = self.start
        self.versions: dict[str, int] = {}
        self.seqs: dict[str, int] = {}
        self.messages: dict[str, list[tuple[str, str]]] = {}  # conversation -> [(message_id, sender)]
        self.devices: set[tuple[str, str]] = set()  # (keys stream, device id)

    def tick(self) -> datetime:
        self.now += self.step
        return self.now

    def emit(
        self,
        stream_id: str,
        payload: EventPayload,
        actor_id: str | None,
        *,
        schema_version: int | None = None,
    ) -> EventEnvelope:
        version = self.versions.get(stream_id, 0) + 1
        self.versions[stream_id] = version
        command_id = _uuid(self.rng)
        event = EventEnvelope(
            event_id=event_id_for(command_id, 0),
            type=payload.event_type,
            schema_version=schema_version or (2 if payload.event_type == "MessageSent" else 1),
            stream_id=stream_id,
            stream_version=version,
            occurred_at=self.tick(),
            actor_id=actor_id,
            correlation_id=_uuid(self.rng),
            causation_id=command_id,
            payload=payload.model_dump(),
        )
        self.events.append(event)
        return event

    def user(self, name: str) -> str:
        user_id = _uuid(self.rng)
        self.emit(
            f"username:{name}",
            UserRegistered(
                user_id=user_id,
                username=name,
                normalised=name,
                display_name=name.title(),
                password_hash=f"$argon2id$v=19$m=65536,t=3,p=4${name}-secret-hash",
            ),
            user_id,
        )
        return user_id

    def conversation(self, creator: str, others: list[str], title: str | None = None) -> str:
        conversation_id = _uuid(self.rng)
        members = [creator, *others]
        self.emit(
            f"conversation:{conversation_id}",
            ConversationCreated(
                conversation_id=conversation_id,
                kind="group" if len(members) > 2 else "direct",
                title=title,
                created_by=creator,
                participant_ids=members,
                admin_ids=[creator],
            ),
            creator,
        )
        self.messages[conversation_id] = []
        return conversation_id

    def message(
        self,
        conversation_id: str,
        sender: str,
        body: str,
        *,
        v1: bool = False,
        attachments: list[Attachment] | None = None,
    ) -> EventEnvelope:
        seq = self.seqs.get(conversation_id, 0) + 1
        self.seqs[conversation_id] = seq
        message_id = _uuid(self.rng)
        self.messages[conversation_id].append((message_id, sender))
        stream = f"conversation:{conversation_id}"
        if v1:
            payload: EventPayload = MessageSentV1(
                message_id=message_id, seq=seq, sender_id=sender, text=body, sent_at=iso(self.now)
            )
            return self.emit(stream, payload, sender, schema_version=1)
        payload = MessageSent(
            conversation_id=conversation_id,
            message_id=message_id,
            seq=seq,
            sender_id=sender,
            body=body,
            format="plain",
            attachments=attachments,
            sent_at=iso(self.now),
        )
        return self.emit(stream, payload, sender)

    def edit(self, conversation_id: str, index: int, body: str) -> EventEnvelope:
        message_id, sender = self.messages[conversation_id][index]
        return self.emit(
            f"conversation:{conversation_id}",
            MessageEdited(
                conversation_id=conversation_id,
                message_id=message_id,
                seq=index + 1,
                sender_id=sender,
                body=body,
                edited_at=iso(self.now),
            ),
            sender,
        )

    def delete(self, conversation_id: str, index: int) -> EventEnvelope:
        message_id, sender = self.messages[conversation_id][index]
        return self.emit(
            f"conversation:{conversation_id}",
            MessageDeleted(
                conversation_id=conversation_id,
                message_id=message_id,
                seq=index + 1,
                sender_id=sender,
                deleted_at=iso(self.now),
            ),
            sender,
        )

    def react(self, conversation_id: str, index: int, user: str, emoji: str, on: bool = True) -> EventEnvelope:
        message_id, _ = self.messages[conversation_id][index]
        return self.emit(
            f"conversation:{conversation_id}",
            ReactionChanged(
                conversation_id=conversation_id,
                message_id=message_id,
                seq=index + 1,
                user_id=user,
                emoji=emoji,
                on=on,
            ),
            user,
        )

    def upload(self, conversation_id: str, uploader: str, *, complete: bool = True) -> Attachment:
        """A media item announced (and, unless `complete` is False, uploaded) in a conversation."""
        media_id = _uuid(self.rng)
        stream = f"conversation:{conversation_id}"
        size = self.rng.randrange(1, 1 << 20)
        requested = MediaUploadRequested(
            conversation_id=conversation_id,
            media_id=media_id,
            uploader_id=uploader,
            filename=f"photo-{media_id[:8]}.png",
            content_type="image/png",
            size=size,
            object_key=f"media/{_uuid(self.rng)}",
            requested_at=iso(self.now),
            expires_at=iso(self.now + timedelta(minutes=15)),
        )
        self.emit(stream, requested, uploader)
        if complete:
            done = MediaUploaded(
                conversation_id=conversation_id,
                media_id=media_id,
                uploader_id=uploader,
                size=size,
                content_type="image/png",
                uploaded_at=iso(self.now),
            )
            self.emit(stream, done, uploader)
        return Attachment(media_id=media_id, filename=requested.filename, content_type="image/png", size=size)

    def delete_media(self, conversation_id: str, media_id: str, by: str) -> EventEnvelope:
        deleted = MediaDeleted(
            conversation_id=conversation_id, media_id=media_id, deleted_by=by, deleted_at=iso(self.now)
        )
        return self.emit(f"conversation:{conversation_id}", deleted, by)

    def _public_key(self) -> str:
        return base64.b64encode(self.rng.randbytes(32)).decode()

    def publish_keys(
        self, user: str, device: str, first_key_id: int, count: int, identity_changed: bool = False
    ) -> None:
        """A device's keys (``keys:<user>``); a device published before is a new signed prekey or identity."""
        stream = f"keys:{user}"
        new_device = (stream, device) not in self.devices
        self.devices.add((stream, device))
        keys = [
            PrekeyPayload(key_id=i, public_key=self._public_key()) for i in range(first_key_id, first_key_id + count)
        ]
        published = DeviceKeysPublished(
            user_id=user,
            device_id=device,
            identity_key=self._public_key(),
            identity_dh_key=self._public_key(),
            signed_prekey=SignedPrekeyPayload(
                key_id=1, public_key=self._public_key(), signature=base64.b64encode(self.rng.randbytes(64)).decode()
            ),
            one_time_prekeys=keys,
            identity_changed=identity_changed and not new_device,
            new_device=new_device,
            published_at=iso(self.now),
        )
        self.emit(stream, published, user)

    def replenish(self, user: str, device: str, first_key_id: int, count: int) -> None:
        keys = [
            PrekeyPayload(key_id=i, public_key=self._public_key()) for i in range(first_key_id, first_key_id + count)
        ]
        self.emit(f"keys:{user}", OneTimePrekeysAdded(user_id=user, device_id=device, one_time_prekeys=keys), user)

    def claim(self, user: str, by: str, claims: list[tuple[str, int]]) -> None:
        payload = PrekeysClaimed(
            user_id=user, claimed_by=by, claims=[PrekeyClaim(device_id=d, key_id=k) for d, k in claims]
        )
        self.emit(f"keys:{user}", payload, by)

    def rejection(self, actor: str, command_type: str, code: str, aggregate_id: str | None = None) -> Rejection:
        rejection = Rejection(
            rejection_id=_uuid(self.rng),
            command_id=_uuid(self.rng),
            command_type=command_type,
            aggregate_id=aggregate_id,
            actor_id=actor,
            correlation_id=_uuid(self.rng),
            code=code,
            message=f"{command_type} refused: {code}",
            occurred_at=self.tick(),
            stage="domain",
        )
        self.rejections.append(rejection)
        return rejection


def chat_log(
    seed: int = 1, users: int = 4, conversations: int = 3, messages: int = 30, *, v1_every: int = 0
) -> LogBuilder:
    """A small but varied log: registrations, conversations, messages, edits, deletes, reactions,
    rejections, media, key directories. ``v1_every``: every n-th message is stored at schema version 1."""
    log = LogBuilder(seed=seed)
    names = [f"user{i}" for i in range(users)]
    ids = [log.user(name) for name in names]
    convs = [
        log.conversation(ids[i % users], [ids[(i + 1) % users], ids[(i + 2) % users]]) for i in range(conversations)
    ]
    rng = random.Random(seed)
    for n in range(messages):
        conv = convs[n % conversations]
        sender = ids[rng.randrange(users)]
        log.message(
            conv,
            sender,
            f"message {n} " + "lorem ipsum " * rng.randrange(1, 6),
            v1=bool(v1_every) and n % v1_every == 0,
        )
        if n % 7 == 3:
            log.edit(conv, rng.randrange(len(log.messages[conv])), f"edited {n}")
        if n % 11 == 5:
            log.react(conv, rng.randrange(len(log.messages[conv])), ids[rng.randrange(users)], "👍")
        if n % 13 == 9:
            log.delete(conv, rng.randrange(len(log.messages[conv])))
        if n % 9 == 4:
            log.rejection(sender, "message:send", "forbidden", f"conversation:{conv}")
        if n % 10 == 6:  # media: attached, left pending, deleted after being attached
            photo = log.upload(conv, sender)
            log.message(conv, sender, f"photo {n}", attachments=[photo])
            log.upload(conv, sender, complete=False)
            if n % 20 == 16:
                log.delete_media(conv, photo.media_id, sender)
    for i, user in enumerate(ids[:2]):
        log.publish_keys(user, "phone", 1, 3)
        log.claim(user, ids[(i + 1) % users], [("phone", 1)])
        log.replenish(user, "phone", 4, 2)
        log.publish_keys(user, "laptop", 1, 1)
        log.claim(user, ids[(i + 2) % users], [("laptop", 1), ("phone", 2)])
        log.publish_keys(user, "phone", 10, 2, identity_changed=True)
    return log


def as_docs(events: list[EventEnvelope]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in events]
