"""Crypto-shredding (infra/security/shredding.py): personal fields sealed under their user's data
key before an event is appended, opened on read, "[erased]" once the key is destroyed; the key ring
over the key store (here the in-memory fake, which holds the store's contract); the master key."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.catalog import parse_payload
from domain.envelope import EventEnvelope
from domain.names import username_hash, username_stream_id
from domain.personal import ERASED, SEALED_FIELD, erased, put, subject_of, take
from infra.security.shredding import (
    KeyMissing,
    KeyRing,
    KeyStore,
    UnreadableBox,
    master_key_bytes,
    new_master_key,
    open_event,
    seal,
    sealed_subject,
    subjects_of,
    username_index_key,
)
from tests.contracts.key_store import InMemoryKeyStore, KeyStoreContract
from tests.unit.app.scenario import USERS
from tests.unit.domain.test_personal import PERSONAL_OPS, personal_log
from tests.unit.projections.test_read_models import OPS, build_log

A, B, C, D = USERS
KEYS: dict[str, bytes | None] = {uid: secrets.token_bytes(32) for uid in USERS}
LOGS = st.one_of(OPS.map(build_log), PERSONAL_OPS.map(personal_log))
MASTER = secrets.token_urlsafe(32)

# -- events with unmistakable personal data --------------------------------------------------------

BODY = "meet me at the old mill at dawn"
FILENAME = "passport-scan-of-zebediah.pdf"
CIPHERTEXT = base64.b64encode(b"an end-to-end encrypted secret!!").decode()
MESSAGE: dict[str, Any] = {
    "conversation_id": "c",
    "message_id": "m1",
    "seq": 1,
    "sender_id": A,
    "body": BODY,
    "format": "plain",
    "sent_at": "2026-01-01T00:00:00.000Z",
    "attachments": [
        {"media_id": "x1", "filename": FILENAME, "content_type": "application/pdf", "size": 3},
        {"media_id": "x2", "filename": "tax-return-2025.pdf", "content_type": "application/pdf", "size": 4},
    ],
}
E2E: dict[str, Any] = {**MESSAGE, "message_id": "m2", "body": None, "format": "e2e", "ciphertext": CIPHERTEXT}
REGISTERED: dict[str, Any] = {
    "user_id": A,
    "username": "Zebediah",
    "normalised": "zebediah",
    "display_name": "Zeb the Great",
    "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$bm90LWEtcmVhbC1oYXNo",
}
UPLOAD: dict[str, Any] = {
    "conversation_id": "c",
    "media_id": "x1",
    "uploader_id": A,
    "filename": FILENAME,
    "content_type": "application/pdf",
    "size": 3,
    "object_key": "k" * 32,
    "requested_at": "2026-01-01T00:00:00.000Z",
    "expires_at": "2026-01-01T01:00:00.000Z",
}
PERSONAL_EVENTS = [
    ("MessageSent", MESSAGE),
    ("MessageSent", E2E),
    ("UserRegistered", REGISTERED),
    ("MediaUploadRequested", UPLOAD),
]


def envelope(type_: str, payload: dict[str, Any], event_id: str = "event-1", version: int = 1) -> EventEnvelope:
    parse_payload(type_, payload)  # a payload as the catalogue has it
    return EventEnvelope(
        event_id=event_id,
        type=type_,
        schema_version=2 if type_ == "MessageSent" else 1,
        stream_id="conversation:c",
        stream_version=version,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        actor_id=A,
        correlation_id="corr",
        causation_id="cmd",
        payload=payload,
    )


def box_of(event: EventEnvelope) -> dict[str, Any]:
    sealed = event.payload[SEALED_FIELD]
    assert isinstance(sealed, dict)
    return sealed


def with_box(event: EventEnvelope, **changes: Any) -> EventEnvelope:
    return event.model_copy(update={"payload": {**event.payload, SEALED_FIELD: {**box_of(event), **changes}}})


# -- sealing and opening ---------------------------------------------------------------------------


def _escaped(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


@given(LOGS)
def test_sealing_then_opening_gives_every_event_back(log: list[EventEnvelope]) -> None:
    for event in log:
        sealed = seal(event, KEYS)
        assert open_event(sealed, KEYS) == event
        from_the_wire = EventEnvelope.model_validate_json(sealed.model_dump_json())
        assert open_event(from_the_wire, KEYS) == event
        assert seal(event, dict(KEYS)).model_dump_json() == sealed.model_dump_json(), "a redelivery is byte-identical"
        assert seal(sealed, KEYS) == sealed, "a sealed event has nothing left to seal"
        rest, taken = take(event.type, event.payload)
        subject = subject_of(event.type, event.payload)
        if not taken:
            assert sealed == event and sealed_subject(sealed) is None
            continue
        assert sealed.model_copy(update={"payload": event.payload}) == event, "only the payload changes"
        assert take(sealed.type, sealed.payload)[1] == {}, "no personal field is left in clear"
        assert sealed.payload == {**rest, SEALED_FIELD: box_of(sealed)}
        assert sealed_subject(sealed) == subject and box_of(sealed)["paths"] == sorted(taken)
        clear = rest | event.model_dump(mode="json", exclude={"payload"})
        stored = sealed.model_dump_json()
        for value in taken.values():
            if isinstance(value, str) and len(value) >= 5 and value not in json.dumps(clear, ensure_ascii=False):
                assert _escaped(value) not in stored, (event.type, value)
    assert subjects_of(seal(e, KEYS) for e in log) == {
        s for s in (subject_of(e.type, e.payload) for e in log if take(e.type, e.payload)[1]) if s is not None
    }


@pytest.mark.parametrize(("type_", "payload"), PERSONAL_EVENTS)
def test_a_sealed_event_holds_none_of_its_personal_values(type_: str, payload: dict[str, Any]) -> None:
    event = envelope(type_, payload)
    stored = seal(event, KEYS).model_dump_json()
    for secret in (BODY, FILENAME, "tax-return-2025", CIPHERTEXT, "Zebediah", "zebediah", "Zeb the Great", "argon2id"):
        assert secret not in stored
    assert A in stored, "the subject (an id) stays readable: the views and erasure need it"
    assert base64.b64decode(box_of(seal(event, KEYS))["box"], validate=True)


def test_the_box_depends_on_the_event_and_the_key() -> None:
    first, second = envelope("MessageSent", MESSAGE, "event-1"), envelope("MessageSent", MESSAGE, "event-2")
    assert box_of(seal(first, KEYS))["box"] != box_of(seal(second, KEYS))["box"], "same content, other event"
    other_keys = {**KEYS, A: secrets.token_bytes(32)}
    assert box_of(seal(first, KEYS))["box"] != box_of(seal(first, other_keys))["box"]


def test_a_box_moved_to_another_event_does_not_open() -> None:
    first, second = envelope("MessageSent", MESSAGE, "event-1"), envelope("MessageSent", MESSAGE, "event-2", 2)
    moved = with_box(seal(second, KEYS), **box_of(seal(first, KEYS)))
    with pytest.raises(UnreadableBox):
        open_event(moved, KEYS)
    retyped = seal(first, KEYS).model_copy(update={"type": "MessageEdited"})
    with pytest.raises(UnreadableBox):
        open_event(retyped, KEYS)


@pytest.mark.parametrize(
    "tamper",
    [
        "flip a bit of the box",
        "drop a path",
        "add a path",
        "claim another subject",
        "another version",
        "not base64",
        "no paths",
        "no box",
        "paths not a list",
    ],
)
def test_a_tampered_box_does_not_open(tamper: str) -> None:
    sealed = seal(envelope("MessageSent", MESSAGE), KEYS)
    box = box_of(sealed)
    raw = bytearray(base64.b64decode(box["box"]))
    raw[len(raw) // 2] ^= 0x01
    changes: dict[str, Any] = {
        "flip a bit of the box": {"box": base64.b64encode(bytes(raw)).decode()},
        "drop a path": {"paths": box["paths"][1:]},
        "add a path": {"paths": sorted([*box["paths"], "ciphertext"])},
        "claim another subject": {"subject": B},
        "another version": {"v": 2},
        "not base64": {"box": "not base64!"},
        "no paths": {"paths": None},
        "no box": {"box": None},
        "paths not a list": {"paths": 3},
    }[tamper]
    with pytest.raises(UnreadableBox):
        open_event(with_box(sealed, **changes), KEYS)


def test_a_box_under_another_key_does_not_open_and_unreadable_is_a_value_error() -> None:
    sealed = seal(envelope("UserRegistered", REGISTERED), KEYS)
    with pytest.raises(ValueError):
        open_event(sealed, {A: secrets.token_bytes(32)})
    assert issubclass(UnreadableBox, ValueError)


def test_a_missing_subject_key_is_a_key_error() -> None:
    event = envelope("MessageSent", MESSAGE)
    with pytest.raises(KeyError):
        seal(event, {B: KEYS[B]})
    with pytest.raises(KeyError):
        open_event(seal(event, KEYS), {B: KEYS[B]})
    plain = envelope(
        "MessageDeleted",
        {k: MESSAGE[k] for k in ("conversation_id", "message_id", "seq", "sender_id")} | {"deleted_at": "x"},
    )
    assert seal(plain, {}) == plain and open_event(plain, {}) == plain, "no personal data: no key needed"


@pytest.mark.parametrize(("type_", "payload"), PERSONAL_EVENTS)
def test_an_erased_subjects_fields_read_erased(type_: str, payload: dict[str, Any]) -> None:
    event = envelope(type_, payload)
    rest, taken = take(type_, payload)
    expected = put(rest, erased(sorted(taken)))
    opened = open_event(seal(event, KEYS), {**KEYS, A: None})
    assert opened.payload == expected
    # Sealing for an erased subject writes "[erased]" in place: there is no key and nobody to read it.
    written = seal(event, {A: None})
    assert written.payload == expected and SEALED_FIELD not in written.payload
    assert open_event(written, {}) == written
    for value in taken.values():
        assert value not in json.dumps(expected)


def test_erased_fields_of_a_message() -> None:
    opened = open_event(seal(envelope("MessageSent", E2E), KEYS), {A: None})
    assert opened.payload["body"] is None, "an absent field stays absent"
    assert opened.payload["ciphertext"] == ERASED
    assert [a["filename"] for a in opened.payload["attachments"]] == [ERASED, ERASED]
    assert [a["media_id"] for a in opened.payload["attachments"]] == ["x1", "x2"]
    parse_payload("MessageSent", opened.payload)  # the views still read it


@pytest.mark.parametrize(
    "changes",
    [
        {"paths": ["attachments.7.filename"]},  # no such attachment
        {"paths": ["sender_id"]},  # not a personal field: it must never read "[erased]"
        {"paths": ["x.y"]},
        {"subject": B},  # credited to another user
    ],
)
def test_a_tampered_box_of_an_erased_user_is_unreadable_too(changes: dict[str, Any]) -> None:
    """An erased key cannot authenticate the box: what it says of itself is checked against the policy."""
    sealed = seal(envelope("MessageSent", E2E), KEYS)
    with pytest.raises(UnreadableBox):
        open_event(with_box(sealed, **changes), {A: None, B: None})


# -- the master key ---------------------------------------------------------------------------------


def test_a_master_key_is_32_urlsafe_base64_bytes() -> None:
    assert len(master_key_bytes(MASTER)) == 32
    fresh = new_master_key()
    assert len(fresh) == 43 and len(master_key_bytes(fresh)) == 32
    assert master_key_bytes(fresh + "=") == master_key_bytes(fresh), "padding or not"


@pytest.mark.parametrize(
    "bad",
    ["", "abc", secrets.token_urlsafe(16), secrets.token_urlsafe(48), "é" * 43, base64.b64encode(b"x" * 31).decode()],
)
def test_other_master_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        master_key_bytes(bad)
    with pytest.raises(ValueError):
        KeyRing(InMemoryKeyStore(), bad)


def test_the_username_index_key_is_derived_from_the_master_key() -> None:
    other = secrets.token_urlsafe(32)
    key = username_index_key(MASTER)
    assert key == username_index_key(MASTER) and len(key) == 32
    assert key != username_index_key(other) and key != master_key_bytes(MASTER)
    stream = username_stream_id(" Alice ", key)
    assert stream == username_stream_id("ALICE", key) == "username:" + username_hash("alice", key)
    assert stream != username_stream_id("alice", username_index_key(other)), "another master, other streams"
    assert "alice" not in stream.lower() and len(username_hash("alice", key)) == 40


# -- the key store and the key ring -----------------------------------------------------------------


class TestInMemoryKeyStore(KeyStoreContract):
    @pytest.fixture
    def store(self) -> KeyStore:
        return InMemoryKeyStore()


async def test_a_key_is_created_once_and_is_the_same_in_every_ring() -> None:
    store = InMemoryKeyStore()
    ring = KeyRing(store, MASTER)
    first = await ring.data_keys([A], create=True)
    key = first[A]
    assert isinstance(key, bytes) and len(key) == 32
    assert await ring.data_keys([A], create=True) == first
    assert await KeyRing(store, MASTER).data_keys([A]) == first, "another process unwraps the same key"
    wrapped = store.records[A]
    assert wrapped is not None and len(wrapped) == 40 and key not in wrapped, "stored wrapped, never in clear"
    both = await KeyRing(store, MASTER).data_keys([A, B, A], create=True)
    assert both[A] == key and isinstance(both[B], bytes) and both[B] != key
    assert set(store.records) == {A, B}


async def test_no_record_without_create_is_a_missing_key() -> None:
    store = InMemoryKeyStore()
    with pytest.raises(KeyMissing):
        await KeyRing(store, MASTER).data_keys([A])
    assert store.records == {}, "nothing is created by a reader"
    sealed = seal(envelope("MessageSent", MESSAGE), KEYS)
    with pytest.raises(KeyMissing):
        await KeyRing(store, MASTER).keys_for([sealed])


async def test_a_key_wrapped_by_another_master_key_is_a_missing_key() -> None:
    store = InMemoryKeyStore()
    await KeyRing(store, MASTER).data_keys([A], create=True)
    with pytest.raises(KeyMissing):
        await KeyRing(store, secrets.token_urlsafe(32)).data_keys([A])
    with pytest.raises(KeyMissing):
        await KeyRing(store, secrets.token_urlsafe(32)).data_keys([A], create=True)


async def test_an_erased_key_is_none_for_good() -> None:
    store = InMemoryKeyStore()
    ring = KeyRing(store, MASTER)
    keys = await ring.data_keys([A, B], create=True)
    await ring.erase(A)
    assert store.records[A] is None
    assert await ring.data_keys([A, B]) == {A: None, B: keys[B]}
    assert await ring.data_keys([A], create=True) == {A: None}, "no key is ever created again"
    assert await KeyRing(store, MASTER).data_keys([A, B]) == {A: None, B: keys[B]}
    assert await ring.erased_among([A, B, C]) == {A}, "no record is not erased"
    await ring.erase(A)  # idempotent
    assert await ring.erased_among([A]) == {A}


async def test_erasing_a_user_without_a_key_forbids_one() -> None:
    store = InMemoryKeyStore()
    ring = KeyRing(store, MASTER)
    await ring.erase(C)
    assert await ring.data_keys([C], create=True) == {C: None}
    assert await ring.erased_among([C]) == {C}


async def test_erased_among_nobody_reads_nothing() -> None:
    store = InMemoryKeyStore()
    assert await KeyRing(store, MASTER).erased_among([]) == set()
    assert store.loads == []


async def test_keys_are_cached_for_cache_s_at_most() -> None:
    store = InMemoryKeyStore()
    writer = KeyRing(store, MASTER)
    key = (await writer.data_keys([A], create=True))[A]
    cached, uncached, brief = KeyRing(store, MASTER), KeyRing(store, MASTER, cache_s=0), KeyRing(store, MASTER, 0.05)
    for ring in (cached, uncached, brief):
        assert await ring.data_keys([A]) == {A: key}
    loads = len(store.loads)
    assert await cached.data_keys([A]) == {A: key} and len(store.loads) == loads, "served from memory"
    assert await uncached.data_keys([A]) == {A: key} and len(store.loads) == loads + 1, "cache_s=0: always read"

    await writer.erase(A)  # in another process: these rings' caches know nothing of it
    assert await uncached.data_keys([A]) == {A: None}
    assert await cached.data_keys([A]) == {A: key}, "still cached (for cache_s at most)"
    await asyncio.sleep(0.1)
    assert await brief.data_keys([A]) == {A: None}, "the cached key expired"
    # A reader that must not show erased data asks after using keys; that forgets them too.
    assert await cached.erased_among([A]) == {A}
    assert await cached.data_keys([A]) == {A: None}


async def test_a_ring_opens_the_log_and_an_erasure_closes_one_users_events() -> None:
    log = personal_log([("send", A, 1), ("send", B, 2), ("request", A, 1), ("attach", B, 1), ("send_e2e", A, 4)])
    store = InMemoryKeyStore()
    writer = KeyRing(store, MASTER)
    subjects = {s for s in (subject_of(e.type, e.payload) for e in log) if s is not None}
    keys = await writer.data_keys(subjects, create=True)
    sealed = [seal(e, keys) for e in log]

    reader = KeyRing(store, MASTER)
    opening = await reader.keys_for(sealed)
    assert opening == {s: keys[s] for s in subjects}
    assert [reader.open(e, opening) for e in sealed] == log
    plain = [e for e in log if not take(e.type, e.payload)[1]]
    assert plain and await reader.keys_for(plain) == {}, "nothing sealed, no key"

    await writer.erase(A)
    later = KeyRing(store, MASTER)
    after = await later.keys_for(sealed)
    assert after[A] is None and after[B] == keys[B]
    for original, event in zip(log, sealed, strict=True):
        opened = later.open(event, after)
        rest, taken = take(original.type, original.payload)
        if subject_of(original.type, original.payload) == A and taken:
            assert opened.payload == put(rest, erased(sorted(taken)))
        else:
            assert opened == original
