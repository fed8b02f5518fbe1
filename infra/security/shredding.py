"""Crypto-shredding: personal fields sealed under a per-user data key, opened on read.

Every user has a data key (AES-256), created the first time an event carries their personal
data and kept in a key store outside the log, wrapped (AES key wrap, RFC 3394) by a key derived
from the master key in settings. ``seal`` replaces an event's personal fields (domain/personal.py)
with one box; ``open_event`` puts them back, or ``"[erased]"`` once the key is destroyed.

- **Deterministic.** A box is AES-GCM-SIV under the data key with a nonce derived from the event
  id, so a command decided twice (at-least-once redelivery) appends byte-identical events. The
  associated data binds a box to its event id, type and subject: it cannot be moved to another
  event or attributed to another user.
- **Erasure** destroys the wrapped key and leaves a tombstone, so no key is ever created again for
  that user and every box sealed under the old key stays closed, wherever a copy of the log is.
- **A missing key** (no record at all, as opposed to a tombstone) means the key store is not the
  one the log was written with; that is an error (``KeyMissing``), never silently "[erased]".

The key store is a port (``KeyStore``); its adapter is infra/mongo/key_store.py. Unwrapped keys are
cached for ``cache_s`` seconds at most, so a destroyed key leaves the memory of every process soon
after; a reader that must not show data erased meanwhile asks ``erased_among`` after using keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from domain import personal
from domain.envelope import EventEnvelope
from domain.media import MEDIA_REF_PREFIX

BOX_VERSION = 1
KEY_BYTES = 32
CACHE_S = 60.0
_LIST_INDEX = re.compile(r"\.\d+\.")  # "attachments.0.filename" -> the policy's "attachments.*.filename"


class KeyValue(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


class KeyMissing(Exception):
    """An event is sealed for a user the key store has no record of (not even a tombstone)."""


class UnreadableBox(ValueError):
    """A box that does not open under its subject's key: tampered with, or sealed by another master key."""


@dataclass(frozen=True)
class StoredKey:
    """A user's key record: the wrapped key, or None once erased (the tombstone)."""

    user_id: str
    wrapped: bytes | None


class KeyStore(Protocol):
    async def load(self, user_ids: Collection[str]) -> dict[str, StoredKey]:
        """The records of those of ``user_ids`` that have one."""
        ...

    async def create(self, user_id: str, wrapped: bytes) -> StoredKey:
        """Store ``wrapped`` unless the user has a record already; returns the record that is stored."""
        ...

    async def destroy(self, user_id: str) -> None:
        """Replace the user's record by a tombstone (also when there was none). Idempotent."""
        ...


def master_key_bytes(encoded: str) -> bytes:
    """The master key from its settings form (urlsafe base64 of 32 bytes); ValueError otherwise."""
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("the master key must be urlsafe base64") from exc
    if len(raw) != KEY_BYTES:
        raise ValueError(f"the master key must be {KEY_BYTES} bytes (base64: 43 characters), got {len(raw)}")
    return raw


def new_master_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip("=")


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=f"parley {purpose}".encode()).derive(
        master
    )


def username_index_key(master_key: str) -> bytes:
    """The key of the username streams' hashes (domain/names.py)."""
    return _derive(master_key_bytes(master_key), "username index")


# -- boxes -------------------------------------------------------------------------------------


def _aad(event: EventEnvelope, subject: str) -> bytes:
    return f"{event.event_id}|{event.type}|{subject}".encode()


def _nonce(key: bytes, event_id: str) -> bytes:
    return hmac.new(key, f"nonce|{event_id}".encode(), hashlib.sha256).digest()[:12]


def seal(event: EventEnvelope, keys: Mapping[str, bytes | None]) -> EventEnvelope:
    """``event`` with its personal fields sealed under its subject's key from ``keys``.

    An event without personal data is returned as it is. A subject whose key is erased (None) gets
    ``"[erased]"`` written in place: there is nothing to seal it under and nobody to read it.
    KeyError if ``keys`` lacks the subject (the caller loads the keys of a batch first)."""
    subject = personal.subject_of(event.type, event.payload)
    if subject is None:
        return event
    rest, taken = personal.take(event.type, event.payload)
    if not taken:
        return event
    key = keys[subject]
    if key is None:
        return event.model_copy(update={"payload": personal.put(rest, personal.erased(sorted(taken)))})
    plain = json.dumps(taken, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    box = AESGCMSIV(key).encrypt(_nonce(key, event.event_id), plain, _aad(event, subject))
    sealed = {"v": BOX_VERSION, "subject": subject, "paths": sorted(taken), "box": base64.b64encode(box).decode()}
    return event.model_copy(update={"payload": {**rest, personal.SEALED_FIELD: sealed}})


def sealed_subject(event: EventEnvelope) -> str | None:
    """The user an event's box is sealed for; None if the event holds no box."""
    sealed = event.payload.get(personal.SEALED_FIELD)
    if not isinstance(sealed, dict):
        return None
    subject = sealed.get("subject")
    return subject if isinstance(subject, str) else None


def open_event(event: EventEnvelope, keys: Mapping[str, bytes | None]) -> EventEnvelope:
    """``event`` with its box opened (its subject's key from ``keys``), ``"[erased]"`` for an erased key.

    KeyError if ``keys`` lacks the subject; UnreadableBox if the box does not open."""
    sealed = event.payload.get(personal.SEALED_FIELD)
    if not isinstance(sealed, dict):
        return event
    try:
        subject = str(sealed["subject"])
        paths = [str(p) for p in sealed["paths"]]
        box = base64.b64decode(sealed["box"], validate=True)
        version = sealed["v"]
    except (KeyError, TypeError, ValueError) as exc:
        raise UnreadableBox(f"event {event.event_id}: malformed box ({exc!r})") from None
    if version != BOX_VERSION:
        raise UnreadableBox(f"event {event.event_id}: box version {version!r} unknown")
    rest = {k: v for k, v in event.payload.items() if k != personal.SEALED_FIELD}
    # What the box says of itself is checked against the policy, since an erased key cannot
    # authenticate it: its subject is the event's, its paths are personal fields of the event type.
    if personal.subject_of(event.type, rest) != subject:
        raise UnreadableBox(f"event {event.event_id}: the box's subject is not the event's")
    allowed = set(personal.POLICY[event.type].paths)
    if any(_LIST_INDEX.sub(".*.", path) not in allowed for path in paths):
        raise UnreadableBox(f"event {event.event_id}: the box names fields that are not personal")
    key = keys[subject]
    values: Any = personal.erased(paths)
    if key is not None:
        try:
            plain = AESGCMSIV(key).decrypt(_nonce(key, event.event_id), box, _aad(event, subject))
            values = json.loads(plain)
        except (InvalidTag, ValueError) as exc:
            raise UnreadableBox(f"event {event.event_id}: the box does not open under {subject}'s key") from exc
        if not isinstance(values, dict) or sorted(values) != paths:
            raise UnreadableBox(f"event {event.event_id}: the box does not hold the fields it names")
    try:
        return event.model_copy(update={"payload": personal.put(rest, values)})
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UnreadableBox(f"event {event.event_id}: the box's fields have no place in the payload") from exc


# -- values kept by the worker ---------------------------------------------------------------------


class SealedMediaRefs:
    """The worker's message index (a Faust table, commands/handler.py ``Stores.messages``) with the
    filename of every media ref sealed under its uploader's key: the table's changelog topic is
    compacted, never rewritten, and an erasure must reach it too.

    ``keys`` are the batch's keys (the decide agent loads those of every command's actor and of the
    uploaders of the media it names). A ref of an erased uploader reads ``"[erased]"``."""

    FIELD = "filename_box"

    def __init__(self, base: KeyValue, keys: Mapping[str, bytes | None]) -> None:
        self._base = base
        self._keys = keys

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._base.get(key)
        if value is None or not key.startswith(MEDIA_REF_PREFIX) or self.FIELD not in value:
            return value
        uploader = str(value["uploader_id"])
        opened = {k: v for k, v in value.items() if k != self.FIELD}
        opened["filename"] = _open_text(value[self.FIELD], self._keys[uploader], f"{key}|{uploader}")
        return opened

    def put(self, key: str, value: dict[str, Any]) -> None:
        if key.startswith(MEDIA_REF_PREFIX) and isinstance(value.get("filename"), str):
            uploader = str(value["uploader_id"])
            sealed = {k: v for k, v in value.items() if k != "filename"}
            sealed[self.FIELD] = _seal_text(value["filename"], self._keys[uploader], f"{key}|{uploader}")
            value = sealed
        self._base.put(key, value)


def _seal_text(text: str, key: bytes | None, context: str) -> str:
    if key is None:
        return personal.ERASED  # nothing to seal it under, nobody to read it
    box = AESGCMSIV(key).encrypt(_nonce(key, context), text.encode(), context.encode())
    return base64.b64encode(box).decode()


def _open_text(box: str, key: bytes | None, context: str) -> str:
    if key is None or box == personal.ERASED:
        return personal.ERASED
    try:
        return AESGCMSIV(key).decrypt(_nonce(key, context), base64.b64decode(box), context.encode()).decode()
    except (InvalidTag, ValueError) as exc:
        raise UnreadableBox(f"{context}: the sealed value does not open") from exc


# -- the key ring ------------------------------------------------------------------------------


class KeyRing:
    """Data keys by user: loaded from the key store, unwrapped with the master key, cached briefly."""

    def __init__(self, store: KeyStore, master_key: str, cache_s: float = CACHE_S) -> None:
        self._store = store
        self._kek = _derive(master_key_bytes(master_key), "key wrapping")
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._cache_s = cache_s

    async def data_keys(self, user_ids: Iterable[str], create: bool = False) -> dict[str, bytes | None]:
        """The data key of each user, None for an erased one.

        ``create``: a user without a record gets a new key (for sealing); otherwise KeyMissing."""
        now = time.monotonic()
        out: dict[str, bytes | None] = {}
        wanted: list[str] = []
        for user_id in dict.fromkeys(user_ids):
            hit = self._cache.get(user_id)
            if hit is not None and now - hit[0] < self._cache_s:
                out[user_id] = hit[1]
            else:
                wanted.append(user_id)
        if not wanted:
            return out
        stored = await self._store.load(wanted)
        for user_id in wanted:
            record = stored.get(user_id)
            if record is None:
                if not create:
                    raise KeyMissing(f"the key store has no key for user {user_id}")
                record = await self._store.create(user_id, aes_key_wrap(self._kek, os.urandom(KEY_BYTES)))
            out[user_id] = self._unwrap(record, now)
        return out

    def _unwrap(self, record: StoredKey, now: float) -> bytes | None:
        if record.wrapped is None:
            self._cache.pop(record.user_id, None)
            return None
        try:
            key = aes_key_unwrap(self._kek, record.wrapped)
        except InvalidUnwrap:
            raise KeyMissing(f"the key of user {record.user_id} was not wrapped by this master key") from None
        self._cache[record.user_id] = (now, key)
        return key

    async def erase(self, user_id: str) -> None:
        """Destroy the user's key (a tombstone stays). Idempotent."""
        self._cache.pop(user_id, None)
        await self._store.destroy(user_id)

    async def erased_among(self, user_ids: Collection[str]) -> set[str]:
        """Those of ``user_ids`` whose key is destroyed (forgotten here too)."""
        if not user_ids:
            return set()
        stored = await self._store.load(list(user_ids))
        gone = {uid for uid, record in stored.items() if record.wrapped is None}
        for user_id in gone:
            self._cache.pop(user_id, None)
        return gone

    async def keys_for(self, events: Iterable[EventEnvelope]) -> dict[str, bytes | None]:
        """The keys that open the boxes of ``events`` (one key store read for those not cached)."""
        return await self.data_keys(subjects_of(events))

    def open(self, event: EventEnvelope, keys: Mapping[str, bytes | None]) -> EventEnvelope:
        return open_event(event, keys)


def subjects_of(events: Iterable[EventEnvelope]) -> set[str]:
    """The users whose sealed data ``events`` carry."""
    return {s for s in (sealed_subject(e) for e in events) if s is not None}
